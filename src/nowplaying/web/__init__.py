"""The HTTP face of nowplaying: routes, pages, the session cookie, SSE and security headers."""

from starlette.applications import Starlette

from nowplaying.config import Settings
from nowplaying.web.app import create_app

__all__ = ["create_app", "create_app_from_env"]


def create_app_from_env() -> Starlette:
    """The app from environment settings: the factory each uvicorn worker process calls."""
    return create_app(Settings())
