"""The recently-played card, ``/p/{id}/recent.svg`` and ``.png``, and its data, ``recent.json``.

Shown only while the owner shares what they played. The images are always a 200; the JSON
refuses a bad parameter with a 400.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.requests import Request
from starlette.responses import Response

from nowplaying.cards.cache import Format
from nowplaying.cards.card import render_card
from nowplaying.cards.options import BadOption, Hide, RecentOptions, card_options
from nowplaying.cards.recent import render_recent
from nowplaying.schema import Error, ErrorCode, Playing, Recent, error, last_played
from nowplaying.sources.base import ReconnectRequired, SourceError
from nowplaying.store import Account, AccountStatus, StoreError
from nowplaying.web.errors import NotFound, Refusal, ServiceUnavailable, json_response
from nowplaying.web.public import (
    CORS,
    EDGE_CACHE,
    NO_CACHE,
    SVG_BUDGET,
    bad_option_image,
    drawn_image,
    state_of,
)
from nowplaying.web.state import Services, services

__all__ = ["as_json", "as_png", "as_svg"]


async def _recent(svc: Services, public_id: str, limit: int) -> Recent | Error:
    """The list, or the error state that stands for it (not found, not shared, reconnect...)."""
    try:
        account = await svc.published.get(public_id)
    except StoreError:
        return error(ErrorCode.UNAVAILABLE)
    if account is None:
        return error(ErrorCode.NOT_FOUND)
    if account.status is AccountStatus.RECONNECT_REQUIRED:
        return error(ErrorCode.RECONNECT_REQUIRED)
    if not account.show_last_played or not svc.runtime.source.tells_history(account.scopes):
        return error(ErrorCode.FORBIDDEN, "The owner does not share what they played.")
    try:
        items = await svc.recent.get(account.id, limit)
    except ReconnectRequired:
        return error(ErrorCode.RECONNECT_REQUIRED)
    except (SourceError, StoreError):
        return error(ErrorCode.UNAVAILABLE)
    return Recent(now_playing=await _playing(svc, account), items=tuple(map(last_played, items)))


async def _playing(svc: Services, account: Account) -> Playing | None:
    """The track playing now, from the live engine (waiting briefly for a first poll)."""
    state = await state_of(svc, account, wait=SVG_BUDGET * 0.5)
    return state if isinstance(state, Playing) and state.is_playing else None


async def as_svg(request: Request) -> Response:
    """The list as an image: 200 whatever happens, revalidated by ETag."""
    return await _image(request, Format.SVG)


async def as_png(request: Request) -> Response:
    """The list as a PNG, for the places that show no SVG; as the SVG."""
    return await _image(request, Format.PNG)


async def _image(request: Request, fmt: Format) -> Response:
    svc = services(request)
    try:
        options = card_options(request.query_params, RecentOptions)
    except BadOption as e:
        return await bad_option_image(request, e, fmt)
    deadline = svc.runtime.clock.now() + SVG_BUDGET
    recent = await _recent(svc, request.path_params["public_id"], options.limit)
    if isinstance(recent, Error):
        return await drawn_image(
            request, render_card(recent, options, now=svc.runtime.clock.now()), fmt
        )
    covers: dict[str, str] = {}
    if Hide.COVER not in options.hide:
        urls = {it.album_image_url for it in recent.items[: options.limit] if it.album_image_url}
        if recent.now_playing is not None and recent.now_playing.album_image_url:
            urls.add(recent.now_playing.album_image_url)
        with contextlib.suppress(TimeoutError):
            async with svc.runtime.clock.timeout(deadline - svc.runtime.clock.now()):
                ordered = sorted(urls)
                found = await asyncio.gather(*(svc.covers.data_uri(u) for u in ordered))
                covers = {u: d for u, d in zip(ordered, found, strict=True) if d is not None}
    svg = render_recent(recent, options, covers=covers, now=svc.runtime.clock.now())
    return await drawn_image(request, svg, fmt)


async def as_json(request: Request) -> Response:
    """The list as JSON (CORS); a bad parameter is a 400 naming it."""
    svc = services(request)
    try:
        options = card_options(request.query_params, RecentOptions)
    except BadOption as e:
        raise Refusal(str(e), headers=CORS) from e
    recent = await _recent(svc, request.path_params["public_id"], options.limit)
    if isinstance(recent, Error):
        if recent.error is ErrorCode.UNAVAILABLE:
            raise ServiceUnavailable(
                "Spotify is unavailable.", retry_after=svc.runtime.hub.poll_seconds
            )
        if recent.error is not ErrorCode.RECONNECT_REQUIRED:
            raise NotFound(recent.message, headers=CORS)
        return json_response(recent, headers={**CORS, **NO_CACHE})
    return json_response(recent, headers={**CORS, **EDGE_CACHE})
