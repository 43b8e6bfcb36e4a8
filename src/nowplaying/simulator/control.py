"""The ``/_control`` JSON API: drive the simulator from another process (benchmarks, the demo).

::

    GET    /_control/calls                          call counters
    GET    /_control/calls/times                    {"endpoint:user": [clock time, ...]}
    POST   /_control/calls/reset
    GET    /_control/users/{id}/player              what plays
    POST   /_control/users/{id}/player/{action}     skip previous pause resume stop
                                                    ad seek play private
    POST   /_control/users/{id}/revoke
    POST   /_control/tokens/expire                  {"user_id": ...} optional
    POST   /_control/refresh-mode                   {"mode": "omit" | "rotate"}
    GET    /_control/faults
    POST   /_control/faults                         the arguments of ``Faults.add``
    DELETE /_control/faults
    GET    /_control/limits                         the limits, their use and counters
    POST   /_control/limits                         {"window_calls": n | null,
                                                     "window_seconds": s, "daily_quota": n | null,
                                                     "removed": [endpoint...],
                                                     "retry_after_dates": bool}
    POST   /_control/limits/reset                   forget counted calls and counters
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from nowplaying.simulator.catalog import item_uri
from nowplaying.simulator.player import Player, PlayerState

if TYPE_CHECKING:
    from nowplaying.simulator.world import World


class ControlError(Exception):
    """A control call that makes no sense; answered with ``status`` and the reason."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def state_json(state: PlayerState) -> dict[str, Any]:
    """A compact view of a player's state."""
    item = state.item
    return {
        "kind": state.kind,
        "visible": state.visible,
        "index": state.index,
        "item": (
            {
                "id": item.get("id"),
                "uri": item_uri(item),
                "name": item.get("name"),
                "duration_ms": item.get("duration_ms"),
            }
            if item is not None
            else None
        ),
        "progress_ms": state.progress_ms,
        "is_playing": state.is_playing,
        "private_session": state.private_session,
        "stopped": state.stopped,
        "timestamp": state.changed_at_ms,
    }


def _act(player: Player, action: str, body: dict[str, Any]) -> None:
    def number(key: str, default: int) -> int:
        value = body.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ControlError(f"{key} must be an integer")
        return value

    simple = {
        "skip": player.skip,
        "previous": player.previous,
        "pause": player.pause,
        "resume": player.resume,
        "stop": player.stop,
    }
    if action in simple:
        simple[action]()
    elif action == "ad":
        player.play_ad(number("duration_ms", 30_000))
    elif action == "seek":
        player.seek(number("progress_ms", 0))
    elif action == "play":
        item = body.get("item", 0)
        if not isinstance(item, int | str) or isinstance(item, bool):
            raise ControlError("item must be an index or an id")
        try:
            player.play(item, number("progress_ms", 0))
        except KeyError as e:
            raise ControlError(f"no item {item!r} in the playlist") from e
    elif action == "private":
        player.private_session(bool(body.get("on", True)))
    else:
        raise ControlError(f"unknown action {action!r}")


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise ControlError("body must be JSON") from e
    if not isinstance(data, dict):
        raise ControlError("body must be a JSON object")
    return data


def routes(sim: World) -> list[Route]:
    """The control routes, bound to ``sim``."""

    def player_for(request: Request) -> Player:
        user_id = request.path_params["user_id"]
        if user_id not in sim.accounts.users:
            raise ControlError(f"no user {user_id!r}", 404)
        return sim.player(user_id)

    async def calls(request: Request) -> Response:
        return JSONResponse(dict(sim.calls))

    async def call_times(request: Request) -> Response:
        times: dict[str, list[float]] = {}
        for key, at in sim.call_times:
            times.setdefault(key, []).append(at)
        return JSONResponse(times)

    async def reset_calls(request: Request) -> Response:
        sim.reset_calls()
        return JSONResponse({})

    async def get_player(request: Request) -> Response:
        return JSONResponse(state_json(player_for(request).state()))

    async def act(request: Request) -> Response:
        player = player_for(request)
        _act(player, request.path_params["action"], await _body(request))
        return JSONResponse(state_json(player.state()))

    async def revoke(request: Request) -> Response:
        player_for(request)
        sim.revoke(request.path_params["user_id"])
        return JSONResponse({})

    async def expire(request: Request) -> Response:
        user_id = (await _body(request)).get("user_id")
        sim.expire_access_tokens(user_id if isinstance(user_id, str) else None)
        return JSONResponse({})

    async def refresh_mode(request: Request) -> Response:
        mode = (await _body(request)).get("mode")
        if mode not in ("omit", "rotate"):
            raise ControlError("mode must be 'omit' or 'rotate'")
        sim.set_refresh_mode(mode)
        return JSONResponse({"mode": mode})

    async def list_faults(request: Request) -> Response:
        return JSONResponse([asdict(f) for f in sim.faults.pending])

    async def add_fault(request: Request) -> Response:
        body = await _body(request)
        endpoint = body.pop("endpoint", None)
        if not isinstance(endpoint, str):
            raise ControlError("endpoint is required")
        try:
            fault = sim.faults.add(endpoint, **body)
        except (TypeError, ValueError) as e:
            raise ControlError(str(e)) from e
        return JSONResponse(asdict(fault), 201)

    async def clear_faults(request: Request) -> Response:
        sim.faults.clear()
        return JSONResponse({})

    prefix = "/_control"
    return [
        Route(f"{prefix}/calls", calls, methods=["GET"]),
        Route(f"{prefix}/calls/times", call_times, methods=["GET"]),
        Route(f"{prefix}/calls/reset", reset_calls, methods=["POST"]),
        Route(f"{prefix}/users/{{user_id}}/player", get_player, methods=["GET"]),
        Route(f"{prefix}/users/{{user_id}}/player/{{action}}", act, methods=["POST"]),
        Route(f"{prefix}/users/{{user_id}}/revoke", revoke, methods=["POST"]),
        Route(f"{prefix}/tokens/expire", expire, methods=["POST"]),
        Route(f"{prefix}/refresh-mode", refresh_mode, methods=["POST"]),
        Route(f"{prefix}/faults", list_faults, methods=["GET"]),
        Route(f"{prefix}/faults", add_fault, methods=["POST"]),
        Route(f"{prefix}/faults", clear_faults, methods=["DELETE"]),
        *_limit_routes(sim, prefix),
    ]


LIMIT_FIELDS = ("window_calls", "window_seconds", "daily_quota")


def _limit_routes(sim: World, prefix: str) -> list[Route]:
    """The ``/limits`` routes: Spotify's rate limit and quota, set and read (:mod:`.limits`)."""

    async def get_limits(request: Request) -> Response:
        return JSONResponse(sim.limits.snapshot())

    async def set_limits(request: Request) -> Response:
        body = await _body(request)
        unknown = set(body) - {*LIMIT_FIELDS, "removed", "retry_after_dates"}
        if unknown:
            raise ControlError(f"unknown field {sorted(unknown)[0]!r}")
        current = sim.limits
        removed = body.get("removed", sorted(current.removed))
        if not isinstance(removed, list) or not all(isinstance(e, str) for e in removed):
            raise ControlError("removed must be a list of endpoint names")
        dates = body.get("retry_after_dates", current.retry_after_dates)
        if not isinstance(dates, bool):
            raise ControlError("retry_after_dates must be true or false")
        window = body.get("window_calls", current.window_calls)
        quota = body.get("daily_quota", current.daily_quota)
        seconds = body.get("window_seconds", current.window_seconds)
        for name, value in (("window_calls", window), ("daily_quota", quota)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise ControlError(f"{name} must be an integer or null")
        if not isinstance(seconds, int | float) or isinstance(seconds, bool):
            raise ControlError("window_seconds must be a number")
        try:
            current.configure(window_calls=window, window_seconds=seconds, daily_quota=quota)
        except ValueError as e:
            raise ControlError(str(e)) from e
        current.removed, current.retry_after_dates = frozenset(removed), dates
        return JSONResponse(current.snapshot())

    async def reset_limits(request: Request) -> Response:
        sim.limits.reset()
        return JSONResponse(sim.limits.snapshot())

    return [
        Route(f"{prefix}/limits", get_limits, methods=["GET"]),
        Route(f"{prefix}/limits", set_limits, methods=["POST"]),
        Route(f"{prefix}/limits/reset", reset_limits, methods=["POST"]),
    ]


async def control_error(request: Request, exc: Exception) -> Response:
    """Exception handler for :class:`ControlError`."""
    status = exc.status if isinstance(exc, ControlError) else 400
    return JSONResponse({"error": str(exc)}, status)
