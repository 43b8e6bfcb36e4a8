"""The Web API routes under ``/v1``: me, currently-playing, recently-played, playback state.

Every call goes through the same gate, in Spotify's order: planned fault, bearer token (401),
the app's rate limit, its developer account's quota and removed endpoints (429, :mod:`.limits`),
development-mode checks on the app (403, plain text), then the endpoint's scope (403, JSON).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from nowplaying.simulator.accounts import AccessToken
from nowplaying.simulator.objects import (
    JSON,
    context_link,
    currently_playing,
    iso_ms,
    playback_state,
    render_item,
    user_object,
)
from nowplaying.simulator.player import Play

if TYPE_CHECKING:
    from nowplaying.simulator.world import World

NOT_REGISTERED = "User not registered in the Developer Dashboard"
OWNER_NOT_PREMIUM = "Active premium subscription required for the owner of the app."


def api_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """Spotify's Web API error body."""
    return JSONResponse({"error": {"status": status, "message": message}}, status, headers=headers)


def unauthorized() -> JSONResponse:
    """The 401 for a missing, unknown, expired or revoked access token."""
    return api_error(
        401, "Missing/invalid/expired access token", {"WWW-Authenticate": 'Bearer realm="spotify"'}
    )


async def gate(
    sim: World, request: Request, endpoint: str, scope: str | None
) -> AccessToken | Response:
    """The checks every Web API call passes, in Spotify's order: the record, or the refusal."""
    sim.calls[endpoint] += 1
    fault = sim.faults.take(endpoint)
    if fault is not None and (answer := await fault.answer()) is not None:
        return answer
    header = request.headers.get("authorization", "")
    kind, _, token = header.partition(" ")
    record = sim.accounts.access(token.strip()) if kind.lower() == "bearer" else None
    if record is None:
        return unauthorized()
    per_user = f"{endpoint}:{record.consent.user_id}"
    sim.calls[per_user] += 1  # per user, for fairness checks
    sim.call_times.append((per_user, sim.clock.now()))
    if (refusal := sim.limits.admit(record.consent.client_id, endpoint)) is not None:
        return refusal.response()
    client = sim.accounts.clients.get(record.consent.client_id)
    if client is not None and not client.owner_premium:
        return PlainTextResponse(OWNER_NOT_PREMIUM, 403)
    allowlist = client.allowlist if client is not None else None
    if allowlist is not None and record.consent.user_id not in allowlist:
        return PlainTextResponse(NOT_REGISTERED, 403)
    if scope is not None and scope not in record.consent.scopes:
        return api_error(403, "Insufficient client scope")
    return record


def routes(sim: World) -> list[Route]:
    """The Web API routes, bound to ``sim``."""

    async def me(request: Request) -> Response:
        record = await gate(sim, request, "me", None)
        if isinstance(record, Response):
            return record
        user = sim.accounts.users[record.consent.user_id]
        return JSONResponse(user_object(user, sim.base_url(request), record.consent.scopes))

    async def playback(
        request: Request, endpoint: str, scope: str, render: Callable[..., dict[str, Any]]
    ) -> Response:
        """currently-playing and /me/player: the same gate, the same 204, another body."""
        record = await gate(sim, request, endpoint, scope)
        if isinstance(record, Response):
            return record
        state = sim.player(record.consent.user_id).state()
        if not state.visible:
            return Response(status_code=204)
        return JSONResponse(render(state, sim.base_url(request), episodes=_episodes(request)))

    async def now_playing(request: Request) -> Response:
        return await playback(
            request, "currently-playing", "user-read-currently-playing", currently_playing
        )

    async def player(request: Request) -> Response:
        return await playback(request, "player", "user-read-playback-state", playback_state)

    async def recently_played(request: Request) -> Response:
        record = await gate(sim, request, "recently-played", "user-read-recently-played")
        if isinstance(record, Response):
            return record
        query = request.query_params
        limit = _int(query.get("limit", "20"))
        if limit is None or not 1 <= limit <= 50:
            return api_error(400, "Invalid limit")
        if "before" in query and "after" in query:
            return api_error(400, "Only one of the parameters before or after may be specified")
        before, after = _int(query.get("before", "0")), _int(query.get("after", "0"))
        if before is None or after is None:
            return api_error(400, "Invalid cursor")
        plays = sim.player(record.consent.user_id).history()
        if "before" in query:
            page = [p for p in plays if p.played_at_ms < before][:limit]
        elif "after" in query:
            page = [p for p in plays if p.played_at_ms > after][-limit:]
        else:
            page = plays[:limit]
        has_older = bool(page) and plays[-1].played_at_ms < page[-1].played_at_ms
        return JSONResponse(_history_page(request, sim.base_url(request), page, limit, has_older))

    return [
        Route("/v1/me", me),
        Route("/v1/me/player", player),
        Route("/v1/me/player/currently-playing", now_playing),
        Route("/v1/me/player/recently-played", recently_played),
    ]


def _history_page(
    request: Request, base: str, page: list[Play], limit: int, has_older: bool
) -> JSON:
    href = f"{base}/v1/me/player/recently-played"
    query = request.url.query
    return {
        "items": [
            {
                "track": render_item(p.item, base),
                "played_at": iso_ms(p.played_at_ms),
                "context": context_link(base),
            }
            for p in page
        ],
        "next": f"{href}?before={page[-1].played_at_ms}&limit={limit}" if has_older else None,
        "cursors": (
            {"after": str(page[0].played_at_ms), "before": str(page[-1].played_at_ms)}
            if page
            else None
        ),
        "limit": limit,
        "href": f"{href}?{query}" if query else href,
    }


def _episodes(request: Request) -> bool:
    types = request.query_params.get("additional_types", "")
    return "episode" in (t.strip() for t in types.split(","))


def _int(value: str) -> int | None:
    return int(value) if value.isascii() and value.isdigit() else None
