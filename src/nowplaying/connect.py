"""Connecting an account from a terminal (``nowplaying login``), for servers without a browser.

Prints the authorize URL, then waits for the redirect: on the loopback redirect URI itself (a
one-route listener), or pasted back into the terminal when the browser ran on another machine.
Then the code is exchanged and the account stored, exactly as the web callback does.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from urllib.parse import parse_qs, urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from .runtime import Runtime
from .spotify import SCOPE_CURRENTLY_PLAYING, SpotifyError, make_pkce
from .store import Account, AccountStatus

LOOPBACK = {"127.0.0.1", "::1", "[::1]"}


class LoginFailed(Exception):
    """The terminal login did not complete; the message says why."""


def parse_redirect(url: str) -> dict[str, str]:
    """The query of a redirect URL pasted by the user."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url.strip()).query).items() if v}


@contextlib.asynccontextmanager
async def loopback_listener(redirect_uri: str) -> AsyncIterator[asyncio.Future[dict[str, str]]]:
    """Listen on the redirect URI's loopback port; the future gets the callback's query."""
    parts = urlsplit(redirect_uri)
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

    app = Starlette(routes=[Route(parts.path or "/", callback)])
    host = (parts.hostname or "127.0.0.1").strip("[]")
    config = uvicorn.Config(app, host=host, port=parts.port or 80, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        yield result
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def terminal_login(
    rt: Runtime,
    *,
    announce: Callable[[str], None],
    pasted: Callable[[], asyncio.Future[str]] | None = None,
    wait_seconds: float = 600.0,
) -> Account:
    """Run the whole authorization code flow from a terminal; returns the stored account."""
    settings = rt.settings
    redirect_uri = settings.spotify_redirect_uri
    state = secrets.token_urlsafe(32)
    verifier, challenge = make_pkce()
    url = rt.client.authorize_url(
        redirect_uri=redirect_uri,
        state=state,
        code_challenge=challenge,
        scopes=(SCOPE_CURRENTLY_PLAYING,),
    )
    announce(url)
    loopback = (urlsplit(redirect_uri).hostname or "") in LOOPBACK
    async with contextlib.AsyncExitStack() as stack:
        waiters: list[asyncio.Future[dict[str, str]]] = []
        if loopback:
            waiters.append(await stack.enter_async_context(loopback_listener(redirect_uri)))
        if pasted is not None:
            waiters.append(asyncio.ensure_future(_parsed(pasted())))
        if not waiters:
            raise LoginFailed(
                "the redirect URI is not loopback and there is no terminal to paste into"
            )
        done, pending = await asyncio.wait(
            waiters, timeout=wait_seconds, return_when="FIRST_COMPLETED"
        )
        for fut in pending:
            fut.cancel()
        if not done:
            raise LoginFailed("timed out waiting for the redirect")
        params = done.pop().result()
    if not secrets.compare_digest(params.get("state", ""), state):
        raise LoginFailed("the redirect's state does not match this login")
    if params.get("error"):
        raise LoginFailed(f"Spotify said: {params['error'][:40]}")
    code = params.get("code")
    if not code:
        raise LoginFailed("the redirect carried no code")
    try:
        token = await rt.client.exchange_code(
            code=code, redirect_uri=redirect_uri, code_verifier=verifier
        )
        profile = await rt.client.me(token.access_token)
    except SpotifyError as e:
        raise LoginFailed(f"Spotify refused the exchange ({type(e).__name__})") from e
    if not token.refresh_token:
        raise LoginFailed("Spotify returned no refresh token")
    existing = await rt.store.get_account(profile.id)
    account = Account(
        id=profile.id,
        display_name=profile.display_name,
        refresh_token=token.refresh_token,
        scopes=token.scope or frozenset({SCOPE_CURRENTLY_PLAYING}),
        consented_at=rt.clock.now(),
        status=AccountStatus.ACTIVE,
        public_id=existing.public_id if existing else None,
        show_last_played=existing.show_last_played if existing else False,
    )
    await rt.store.put_account(account)
    rt.tokens.seed(account.id, token)
    return account


async def _parsed(line: asyncio.Future[str]) -> dict[str, str]:
    return parse_redirect(await line)
