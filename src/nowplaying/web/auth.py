"""Connecting an account: ``/login``, ``/callback``, ``/logout`` and the home page.

The OAuth ``state`` is single-use and bound to the browser that started the login, except a
login handed over by ``nowplaying login``, which no browser started and which starts no session.
The redirect URI comes from settings, never from the Host header.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from nowplaying.engine.accounts import (
    LinkedElsewhere,
    connect_account,
    disconnect_account,
    is_terminal_login,
    push_token,
)
from nowplaying.models import Grant
from nowplaying.sources.spotify.errors import (
    Forbidden,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    RateLimited,
    SpotifyError,
)
from nowplaying.sources.spotify.grants import exchange_grant
from nowplaying.sources.spotify.oauth import (
    SCOPE_CURRENTLY_PLAYING,
    SCOPE_RECENTLY_PLAYED,
    make_pkce,
)
from nowplaying.store import LoginState, StoreError
from nowplaying.web import owner, pages
from nowplaying.web.security import printable, same_origin
from nowplaying.web.sessions import LOGIN_TTL
from nowplaying.web.state import Services, services

log = logging.getLogger(__name__)


async def home(request: Request) -> Response:
    svc = services(request)
    session = await svc.sessions.current(request)
    account = await svc.runtime.store.get_account(session.account_id) if session else None
    if account is None:
        offered = owner.offered(svc.runtime.settings)
        return pages.home_anonymous(
            demo=svc.demo, sources=[(owner.LABELS[k], url) for k, url in offered.items()]
        )
    if svc.runtime.problems is not None:
        await svc.runtime.problems.load(account.id, *owner.PULLED)
    info = owner.describe(svc, account, sources=await svc.runtime.store.list_sources(account.id))
    share = pages.Share(
        links=info.links.data() if info.links else None,
        last_played=account.show_last_played,
        reconnect_by=datetime.fromtimestamp(owner.reconnect_by(account), UTC).strftime("%d %B %Y")
        if account.spotify
        else None,
    )
    return pages.home_connected(
        display_name=account.display_name,
        reconnect_reason=account.reconnect_reason,
        demo=svc.demo,
        share=share,
        pause_note=owner.pause_note(svc.runtime.hub.pause),
        refusal=svc.runtime.problems.get(account.id) if svc.runtime.problems else None,
        removed=owner.withdrawals(svc),
        budget_note=(await svc.runtime.client.budget.usage()).note()
        if svc.runtime.client.budget
        else None,
        push=await _push(svc, account.id),
        sources=pages.Sources.of(info, owner.LABELS),
    )


async def _push(svc: Services, account_id: str) -> dict[str, str]:
    """The push token and the URLs players push to, for the owner page."""
    token = await push_token(svc.runtime, account_id)
    links = owner.push_links(svc, token)
    return {
        "token": token,
        "listenbrainz_url": links.listenbrainz_url,
        "web_scrobbler_url": links.web_scrobbler_url,
    }


async def login(request: Request) -> Response:
    """Send the browser to Spotify's consent page with a fresh state and PKCE challenge."""
    svc = services(request)
    if not svc.runtime.settings.nowplaying_spotify:
        return fail(request, "Spotify is not set up", "This server runs without Spotify.", 404)
    state = secrets.token_urlsafe(32)
    verifier, challenge = make_pkce()
    # The least scope that works; "last played" asks for one more, and only when turned on.
    extra = request.query_params.get("with") == "recently-played"
    scopes = (
        (SCOPE_CURRENTLY_PLAYING, SCOPE_RECENTLY_PLAYED) if extra else (SCOPE_CURRENTLY_PLAYING,)
    )
    now = svc.runtime.clock.now()
    url = svc.runtime.client.authorize_url(
        redirect_uri=svc.runtime.settings.spotify_redirect_uri,
        state=state,
        code_challenge=challenge,
        scopes=scopes,
        show_dialog=extra,
    )
    response = RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})
    browser = svc.sessions.bind_browser(response)
    try:
        await svc.runtime.store.purge_logins(older_than=now - LOGIN_TTL)
        await svc.runtime.store.put_login(
            LoginState(state, verifier, browser, now, frozenset(scopes))
        )
    except StoreError:
        return fail(request, "Can't sign in right now", "Storage is unavailable.", 503)
    return response


async def callback(request: Request) -> Response:
    """Check state, exchange the code, connect the account, start a session, 303 to ``/``.

    A login handed over by ``nowplaying login`` (see
    :func:`nowplaying.engine.accounts.is_terminal_login`) is bound to no browser: it is completed
    the same way, but starts no session here.
    """
    svc = services(request)
    params = request.query_params
    state = params.get("state")
    if not state or len(state) > 200:
        return fail(request, "Sign-in failed", "The sign-in response had no valid state.", 400)
    login = await pending_login(request, state)
    if login is None:
        return stale_login(request)
    error = params.get("error")
    if error == "access_denied":
        return fail(
            request, "Not connected", "You chose not to connect Spotify. Nothing was stored.", 403
        )
    if error:
        return fail(request, "Sign-in failed", "Spotify did not complete the sign-in.", 400)
    code = params.get("code")
    if not code or len(code) > 2048:
        return fail(request, "Sign-in failed", "The sign-in response had no code.", 400)

    grant = await _exchange(request, code, login)
    if isinstance(grant, Response):
        return grant
    terminal = is_terminal_login(login)
    response: Response
    try:
        session = None if terminal else await svc.sessions.current(request)
        owner = session.account_id if session else None
        account = await connect_account(svc.runtime, grant, requested=login.scopes, owner=owner)
        if terminal:
            response = pages.terminal_done(demo=svc.demo)
        else:
            response = RedirectResponse("/", status_code=303)
            await svc.sessions.start(request, response, account.id)
    except LinkedElsewhere:
        return fail(
            request,
            "Linked to another widget",
            "This Spotify account signs in to another widget here. Sign in with it and unlink"
            " Spotify there first.",
            409,
        )
    except StoreError:
        return fail(request, "Can't sign in right now", "Storage is unavailable.", 503)
    svc.sessions.forget_account(account.id)
    if not terminal:
        svc.sessions.clear_login(response)
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


async def pending_login(request: Request, state: str) -> LoginState | None:
    """The login ``state`` belongs to, taken (single use), if this browser may complete it."""
    svc = services(request)
    login = await svc.runtime.store.take_login(state)
    if login is None or svc.runtime.clock.now() - login.created_at > LOGIN_TTL:
        return None
    if is_terminal_login(login):
        return login  # handed over by `nowplaying login`: no browser to bind
    browser = svc.sessions.browser(request)
    if browser is None or not secrets.compare_digest(login.browser, browser):
        return None
    return login


async def _exchange(request: Request, code: str, login: LoginState) -> Grant | Response:
    """The grant for ``code``, or the page that says why there is none."""
    svc = services(request)
    try:
        return await exchange_grant(
            svc.runtime.client,
            code=code,
            redirect_uri=svc.runtime.settings.spotify_redirect_uri,
            code_verifier=login.code_verifier,
        )
    except InvalidGrant:
        return fail(request, "Sign-in expired", "That sign-in code is no longer valid.", 400)
    except Forbidden as e:
        log.warning(
            "Spotify refused the profile read (%s): %s", type(e).__name__, printable(e.reason, 80)
        )
        return fail(request, "Spotify refused access", e.fix, 403)
    except (InvalidClient, InvalidRequest):
        log.error("Spotify refused this app's credentials; check SPOTIFY_CLIENT_ID/SECRET")
        return fail(request, "Sign-in failed", "Spotify refused this app's credentials.", 502)
    except RateLimited as e:
        return fail(
            request, "Spotify is busy", "Too many requests; try again shortly.", 503, e.retry_after
        )
    except SpotifyError as e:
        log.warning("code exchange failed: %s", type(e).__name__)
        return fail(request, "Spotify is unavailable", "Please try again in a moment.", 503)


async def logout(request: Request) -> Response:
    """Disconnect: forget the session, the account's tokens and its cached data."""
    svc = services(request)
    if not same_origin(request, svc.public_origin):
        return fail(request, "Refused", "Disconnecting must be done from this site.", 403)
    session = await svc.sessions.current(request)
    response = RedirectResponse("/", status_code=303)
    if session is not None:
        await disconnect_account(svc.runtime, session.account_id)
        svc.sessions.forget_account(session.account_id)
    await svc.sessions.end(request, response)
    return response


def stale_login(request: Request) -> Response:
    """The page for a callback whose state is not a login this browser may complete."""
    return fail(
        request,
        "Sign-in failed",
        "This sign-in link is unknown, expired, already used, or was started in another "
        "browser. Please start again.",
        400,
    )


def fail(
    request: Request, title: str, message: str, status: int, retry_after: float | None = None
) -> Response:
    response = pages.error_page(title, message, status=status, demo=services(request).demo)
    response.headers["Referrer-Policy"] = "no-referrer"
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, int(retry_after)))
    return response
