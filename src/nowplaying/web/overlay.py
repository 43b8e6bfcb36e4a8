"""The stream overlay, ``/p/{id}/overlay``: the widget as an OBS browser source.

A transparent page without scrollbars, sized for a 1920x1080 canvas (a card in one corner) or a
strip (the whole source is the bar), in large type. The card appears on a track change and fades
``fade`` seconds later (``0`` keeps it), or when playback pauses unless ``paused=show``; a long
title scrolls (not with reduced motion). Live over the public event stream, which reconnects by
itself, so the overlay recovers after the source or the server restarts.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from nowplaying.store import Account

from . import pages
from .public import PUBLIC_ID
from .state import Services, services


class OverlayOptions(BaseModel):
    """The overlay's query string, validated: an unknown name or a bad value is a 400."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    theme: Literal["light", "dark", "auto"] = Field(default="dark", description="Colour theme.")
    layout: Literal["canvas", "strip"] = Field(
        default="canvas",
        description="A card in a corner of a 1920x1080 canvas, or a full-width strip.",
    )
    position: Literal["bottom-left", "bottom-right", "top-left", "top-right"] = Field(
        default="bottom-left", description="Where the card sits on the canvas."
    )
    fade: int = Field(
        default=0,
        ge=0,
        le=3600,
        description="Seconds after a track change until the card fades; 0: never.",
    )
    paused: Literal["hide", "show"] = Field(
        default="hide", description="Whether a paused track shows."
    )


async def published(svc: Services, public_id: str) -> Account | None:
    """The account behind a public id, or None (the same cached lookup as the other links)."""
    return await svc.published.get(public_id) if PUBLIC_ID.match(public_id) else None


def parse(request: Request) -> OverlayOptions:
    """The options from the query string; :class:`ValidationError` names what is wrong."""
    return OverlayOptions.model_validate(dict(request.query_params))


def problem(exc: ValidationError) -> str:
    """One line naming each bad parameter, e.g. ``fade: Input should be ... 3600``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'query'}: {e['msg']}" for e in exc.errors()
    )


async def overlay(request: Request) -> Response:
    svc = services(request)
    public_id = request.path_params["public_id"]
    try:
        options = parse(request)
    except ValidationError as exc:
        response = pages.error_page("Bad parameter", problem(exc), status=400, demo=False)
    else:
        account = await published(svc, public_id)
        if account is None:
            response = pages.link_missing()
        else:
            response = pages.overlay_page(
                endpoint=f"/p/{public_id}.json", events=f"/p/{public_id}/events", options=options
            )
    response.headers["Content-Security-Policy"] = pages.EMBED_CSP
    response.headers["Cache-Control"] = "no-cache"
    return response


def openapi_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """The model's fields as OpenAPI query parameters (the model is the one definition)."""
    schema = model.model_json_schema()
    return [
        {
            "name": name,
            "in": "query",
            "description": prop.pop("description", ""),
            "schema": {k: v for k, v in prop.items() if k != "title"},
        }
        for name, prop in schema["properties"].items()
    ]
