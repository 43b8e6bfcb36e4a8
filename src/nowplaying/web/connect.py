"""Connecting a source that is not Spotify: Last.fm's web auth and a ListenBrainz user token.

Signed in, the source joins the owner's widget; signed out, it signs in to the widget this
source user has, or to a new one (:func:`nowplaying.engine.accounts.connect_source`). Last.fm
echoes only ``token`` to the callback, so the callback URL carries our single-use ``state``,
bound to the browser like Spotify's (a pending login whose verifier names the source).
"""

from __future__ import annotations

import logging
import secrets
import urllib.parse

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from nowplaying.engine.accounts import LinkedElsewhere, connect_source, is_terminal_login
from nowplaying.models import SourceKind
from nowplaying.sources import lastfm
from nowplaying.sources.base import RateLimited, SourceError
from nowplaying.store import LoginState, SourceLink, StoreError
from nowplaying.web import pages
from nowplaying.web.auth import fail, pending_login, stale_login
from nowplaying.web.owner import LABELS
from nowplaying.web.security import same_origin
from nowplaying.web.sessions import LOGIN_TTL
from nowplaying.web.state import services

log = logging.getLogger(__name__)

LASTFM_LOGIN = "source:lastfm"
"""The ``code_verifier`` of a pending Last.fm login (it has no PKCE): a Spotify state is not
one, and this one fails Spotify's code exchange."""
MAX_TOKEN = 200


async def lastfm_login(request: Request) -> Response:
    """Send the browser to Last.fm's consent page; it comes back to ``/callback/lastfm``."""
    svc = services(request)
    settings = svc.runtime.settings
    if not settings.lastfm_configured:
        return fail(request, "Last.fm is not set up", "This server has no Last.fm API key.", 404)
    state = secrets.token_urlsafe(32)
    callback = f"{svc.public_origin}/callback/lastfm?{urllib.parse.urlencode({'state': state})}"
    url = lastfm.auth_url(svc.runtime.lastfm_auth_url, settings.lastfm_key, callback)
    response = RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})
    browser = svc.sessions.bind_browser(response)
    now = svc.runtime.clock.now()
    try:
        await svc.runtime.store.purge_logins(older_than=now - LOGIN_TTL)
        await svc.runtime.store.put_login(LoginState(state, LASTFM_LOGIN, browser, now))
    except StoreError:
        return fail(request, "Can't sign in right now", "Storage is unavailable.", 503)
    return response


async def lastfm_callback(request: Request) -> Response:
    """Check the state, exchange Last.fm's token for the user's session, link or sign in."""
    params = request.query_params
    state, token = params.get("state", ""), params.get("token", "")
    if not state or len(state) > MAX_TOKEN:
        return fail(request, "Sign-in failed", "The sign-in response had no valid state.", 400)
    try:
        login = await pending_login(request, state)
    except StoreError:
        return fail(request, "Can't sign in right now", "Storage is unavailable.", 503)
    if login is None or is_terminal_login(login) or login.code_verifier != LASTFM_LOGIN:
        return stale_login(request)
    if not token or len(token) > MAX_TOKEN:
        return fail(request, "Not connected", "Last.fm did not send a sign-in token.", 400)
    try:
        name, session_key = await services(request).runtime.lastfm.session(token)
    except lastfm.TokenRefused:
        return fail(request, "Not connected", "Last.fm did not accept the sign-in.", 400)
    except lastfm.KeyRefused:
        log.error("Last.fm refused this server's API key; check LASTFM_API_KEY/SECRET")
        return fail(request, "Sign-in failed", "Last.fm refused this server's API key.", 502)
    except SourceError as e:
        return _unavailable(request, "Last.fm", e)
    if not name:
        return fail(request, "Sign-in failed", "Last.fm named no user.", 502)
    return await _connected(request, SourceKind.LASTFM, name, session_key)


async def listenbrainz_page(request: Request) -> Response:
    """The form that takes a ListenBrainz user token."""
    return _token_page(request)


async def listenbrainz_submit(request: Request) -> Response:
    """Check the token with ListenBrainz (``validate-token`` names its user), link or sign in."""
    svc = services(request)
    if not same_origin(request, svc.public_origin):
        return fail(request, "Refused", "Connecting must be done from this site.", 403)
    form = urllib.parse.parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    # ListenBrainz's tokens are ASCII (a UUID); anything else cannot go in a header.
    if not token or len(token) > MAX_TOKEN or not (token.isascii() and token.isprintable()):
        return _token_page(request, "Paste your ListenBrainz user token.", 400)
    try:
        name = await svc.runtime.listenbrainz.validate_token(token)
    except SourceError as e:
        return _unavailable(request, "ListenBrainz", e)
    if name is None:
        return _token_page(
            request, "ListenBrainz does not know this token. Copy it again from your settings.", 400
        )
    return await _connected(request, SourceKind.LISTENBRAINZ, name, token)


def _token_page(request: Request, message: str | None = None, status: int = 200) -> Response:
    page = pages.connect_listenbrainz(message=message, status=status, demo=services(request).demo)
    page.headers["Referrer-Policy"] = "no-referrer"
    return page


def _unavailable(request: Request, label: str, error: SourceError) -> Response:
    log.warning("%s sign-in failed: %s", label, type(error).__name__)
    wait = error.retry_after if isinstance(error, RateLimited) else None
    return fail(request, f"{label} is unavailable", "Please try again in a moment.", 503, wait)


async def _connected(request: Request, kind: SourceKind, name: str, secret: str) -> Response:
    """Link the source (signed in) or sign in with it; 303 to the owner page."""
    svc = services(request)
    label = LABELS[kind]
    link = SourceLink("", kind, name, secret, connected_at=svc.runtime.clock.now())
    response = RedirectResponse("/", status_code=303)
    try:
        session = await svc.sessions.current(request)
        owner = session.account_id if session else None
        account = await connect_source(svc.runtime, link, owner=owner)
        if owner is None:
            await svc.sessions.start(request, response, account.id)
    except LinkedElsewhere:
        return fail(
            request,
            "Linked to another widget",
            f"The {label} account {name} is linked to another widget here. Sign in with it"
            " and unlink it there first.",
            409,
        )
    except (StoreError, LookupError):
        return fail(request, "Can't sign in right now", "Storage is unavailable.", 503)
    svc.sessions.forget_account(account.id)
    svc.sessions.clear_login(response)
    log.info("%s %s a widget", label, "linked to" if owner else "signed in to")
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response
