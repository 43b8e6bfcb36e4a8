"""The HTTP face of nowplaying: routes, pages, the session cookie, SSE and security headers."""

from .app import create_app

__all__ = ["create_app"]
