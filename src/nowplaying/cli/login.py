"""``nowplaying login``: connect an account from a terminal, for servers without a browser.

The redirect arrives one of three ways: at a listener on the loopback redirect URI when its port
is free; through the running server when it is not (the pending login is stored as a terminal
login, the server's ``/callback`` completes it, this command watches the store); or, on a
terminal, as the address the browser ended on, pasted back.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from nowplaying.engine.accounts import (
    connect_account,
    terminal_login_state,
)
from nowplaying.runtime import Runtime
from nowplaying.sources.spotify.errors import MissingRefreshToken, SpotifyError
from nowplaying.sources.spotify.grants import exchange_grant
from nowplaying.sources.spotify.oauth import SCOPE_CURRENTLY_PLAYING, make_pkce
from nowplaying.store import Account, AccountStatus, StoreError

LOOPBACK = {"127.0.0.1", "::1", "[::1]"}
SCOPES = frozenset({SCOPE_CURRENTLY_PLAYING})


class LoginFailed(Exception):
    """The terminal login did not complete; the message says why."""


@dataclass(frozen=True, slots=True)
class Waiting:
    """How this login waits for the redirect (what the user is told)."""

    redirect_uri: str
    listener: bool
    """This command listens on the redirect URI itself."""
    server: bool
    """The server at the redirect URI completes the login (the port here is taken, or the
    redirect URI is another host's)."""
    paste: bool
    """A pasted address is accepted too."""


def parse_redirect(url: str) -> dict[str, str]:
    """The query of a redirect URL pasted by the user."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url.strip()).query).items() if v}


def bind_redirect_port(redirect_uri: str) -> socket.socket | None:
    """A listening socket on the loopback redirect URI's port, or None when it is taken."""
    parts = urlsplit(redirect_uri)
    host = (parts.hostname or "127.0.0.1").strip("[]")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, parts.port or 80))
        sock.listen(16)
    except OSError:
        sock.close()
        return None
    return sock


@contextlib.asynccontextmanager
async def loopback_listener(
    redirect_uri: str, sock: socket.socket
) -> AsyncIterator[asyncio.Future[dict[str, str]]]:
    """Serve the redirect URI's path on ``sock``; the future gets the callback's query."""
    loop = asyncio.get_running_loop()
    result: asyncio.Future[dict[str, str]] = loop.create_future()

    async def callback(request: Request) -> Response:
        if not result.done():
            result.set_result(dict(request.query_params))
        return HTMLResponse(
            "<!doctype html><title>nowplaying</title><p>Done: you can close this tab and go back"
            " to the terminal.</p>",
            headers={"Referrer-Policy": "no-referrer"},
        )

    app = Starlette(routes=[Route(urlsplit(redirect_uri).path or "/", callback)])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield result
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()


async def terminal_login(
    rt: Runtime,
    *,
    announce: Callable[[str, Waiting], None],
    pasted: Callable[[], Awaitable[str]] | None = None,
    wait_seconds: float = 600.0,
    poll_seconds: float = 1.0,
) -> Account:
    """Run the whole authorization code flow from a terminal; returns the connected account."""
    redirect_uri = rt.settings.spotify_redirect_uri
    state = secrets.token_urlsafe(32)
    verifier, challenge = make_pkce()
    url = rt.client.authorize_url(
        redirect_uri=redirect_uri, state=state, code_challenge=challenge, scopes=tuple(SCOPES)
    )
    started = rt.clock.now()
    sock = None
    if (urlsplit(redirect_uri).hostname or "") in LOOPBACK:
        sock = bind_redirect_port(redirect_uri)
    async with contextlib.AsyncExitStack() as stack:
        waiters: list[asyncio.Future[Account]] = []
        handed_off: asyncio.Future[Account] | None = None
        if sock is not None:
            query = await stack.enter_async_context(loopback_listener(redirect_uri, sock))
            waiters.append(asyncio.ensure_future(_listened(rt, state, verifier, query)))
        else:
            await _hand_off(rt, state, verifier, started)
            stack.push_async_callback(_withdraw, rt, state)
            handed_off = asyncio.ensure_future(_connected_since(rt, started, poll_seconds))
            waiters.append(handed_off)
        if pasted is not None:
            waiters.append(
                asyncio.ensure_future(_pasted(rt, state, verifier, pasted(), handed_off))
            )
        timer = asyncio.ensure_future(rt.clock.sleep(wait_seconds))
        every: list[asyncio.Future[Any]] = [*waiters, timer]
        announce(url, Waiting(redirect_uri, sock is not None, sock is None, pasted is not None))
        try:
            done, _ = await asyncio.wait(every, return_when="FIRST_COMPLETED")
        finally:
            for fut in every:
                fut.cancel()
            await asyncio.gather(*every, return_exceptions=True)
        winner = next((fut for fut in waiters if fut in done), None)
        if winner is None:
            raise LoginFailed("timed out waiting for the redirect")
        return winner.result()


async def _hand_off(rt: Runtime, state: str, verifier: str, now: float) -> None:
    login = terminal_login_state(state, verifier, now=now, scopes=SCOPES)
    try:
        await rt.store.put_login(login)
    except StoreError as e:
        raise LoginFailed("the database is unavailable") from e


async def _withdraw(rt: Runtime, state: str) -> None:
    """Remove the pending login if the server did not use it (paste, timeout, failure)."""
    with contextlib.suppress(StoreError):
        await rt.store.take_login(state)


async def _connected_since(rt: Runtime, since: float, poll_seconds: float) -> Account:
    """The account the server connected for us: the first one consented at or after ``since``."""
    while True:
        with contextlib.suppress(StoreError):
            fresh = [
                a
                for a in await rt.store.list_accounts()
                if a.status is AccountStatus.ACTIVE and a.consented_at >= since
            ]
            if fresh:
                return max(fresh, key=lambda a: a.consented_at)
        await rt.clock.sleep(poll_seconds)


async def _pasted(
    rt: Runtime,
    state: str,
    verifier: str,
    line: Awaitable[str],
    handed_off: asyncio.Future[Account] | None,
) -> Account:
    params = parse_redirect(await line)
    if handed_off is not None and secrets.compare_digest(params.get("state", ""), state):
        with contextlib.suppress(StoreError):
            if await rt.store.take_login(state) is None:
                # The server took this login first: the account arrives through it.
                return await asyncio.shield(handed_off)
    return await _complete(rt, state, verifier, params)


async def _listened(
    rt: Runtime, state: str, verifier: str, query: Awaitable[dict[str, str]]
) -> Account:
    return await _complete(rt, state, verifier, await query)


async def _complete(rt: Runtime, state: str, verifier: str, params: dict[str, str]) -> Account:
    """Check the redirect's query, exchange its code, connect the account."""
    if not secrets.compare_digest(params.get("state", ""), state):
        raise LoginFailed("the redirect's state does not match this login")
    if params.get("error"):
        raise LoginFailed(f"Spotify said: {params['error'][:40]}")
    code = params.get("code")
    if not code:
        raise LoginFailed("the redirect carried no code")
    try:
        grant = await exchange_grant(
            rt.client,
            code=code,
            redirect_uri=rt.settings.spotify_redirect_uri,
            code_verifier=verifier,
        )
    except MissingRefreshToken as e:
        raise LoginFailed("Spotify returned no refresh token") from e
    except SpotifyError as e:
        raise LoginFailed(f"Spotify refused the exchange ({type(e).__name__})") from e
    try:
        return await connect_account(rt, grant, requested=SCOPES)
    except StoreError as e:
        raise LoginFailed("the database is unavailable") from e
