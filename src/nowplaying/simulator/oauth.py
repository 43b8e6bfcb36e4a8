"""The accounts routes: ``/authorize`` (the consent page) and ``POST /api/token``.

The consent form's post is validated again (hidden fields are user input). Problems with the
client or the redirect URI are never redirected: they get Spotify's error page.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from nowplaying.simulator.accounts import Client, TokenError
from nowplaying.simulator.pages import SCOPE_TEXT, consent_page, error_page

if TYPE_CHECKING:
    from nowplaying.simulator.world import World

USER_COOKIE = "sp_sim_user"
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
_LOOPBACK = frozenset({"127.0.0.1", "::1"})
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
_CARRIED = (
    "client_id",
    "response_type",
    "redirect_uri",
    "scope",
    "state",
    "show_dialog",
    "code_challenge_method",
    "code_challenge",
)


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """A valid authorization request."""

    client: Client
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None
    challenge: str | None
    show_dialog: bool
    params: dict[str, str]  # what the consent form carries back


def redirect_problem(client: Client, uri: str | None) -> str | None:
    """Why Spotify would refuse to redirect to ``uri`` for ``client`` (None: it is fine)."""
    if not uri:
        return "INVALID_CLIENT: Invalid redirect URI"
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return "INVALID_CLIENT: Invalid redirect URI"
    host = parts.hostname or ""
    if host == "localhost" or (parts.scheme == "http" and host not in _LOOPBACK):
        return "INVALID_CLIENT: Insecure redirect URI"
    if uri in client.redirect_uris:
        return None
    for registered in client.redirect_uris:
        reg = urlsplit(registered)
        if (
            reg.scheme == "http"
            and reg.hostname in _LOOPBACK
            and (reg.scheme, reg.hostname, reg.path, reg.query)
            == (parts.scheme, host, parts.path, parts.query)
            and port is not None
            and not parts.fragment
        ):
            return None
    return "INVALID_CLIENT: Invalid redirect URI"


def with_query(uri: str, params: Mapping[str, str | None]) -> str:
    """``uri`` with ``params`` (those not None) added to its query string."""
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{uri}{'&' if '?' in uri else '?'}{query}"


def parse_request(sim: World, params: Mapping[str, str]) -> AuthRequest | Response:
    """The valid authorization request in ``params``, or the response refusing it."""
    client = sim.accounts.clients.get(params.get("client_id", ""))
    if client is None:
        return HTMLResponse(error_page("INVALID_CLIENT: Invalid client"), 400)
    redirect_uri = params.get("redirect_uri")
    problem = redirect_problem(client, redirect_uri)
    if problem is not None or redirect_uri is None:
        return HTMLResponse(error_page(problem or ""), 400)
    state = params.get("state")

    def refuse(error: str, description: str | None = None) -> Response:
        query = {"error": error, "error_description": description, "state": state}
        return RedirectResponse(with_query(redirect_uri, query), 302)

    if params.get("response_type") != "code":
        return refuse("unsupported_response_type")
    scopes = tuple(dict.fromkeys(params.get("scope", "").split()))
    if any(s not in SCOPE_TEXT for s in scopes):
        return refuse("invalid_scope")
    method, challenge = params.get("code_challenge_method"), params.get("code_challenge")
    if (method is not None or challenge is not None) and (
        method != "S256" or challenge is None or not _CHALLENGE.fullmatch(challenge)
    ):
        return refuse("invalid_request", "code_challenge must be S256 base64url")
    return AuthRequest(
        client,
        redirect_uri,
        scopes,
        state,
        challenge,
        params.get("show_dialog", "").lower() == "true",
        {k: params[k] for k in _CARRIED if k in params},
    )


def approve(sim: World, request: AuthRequest, user_id: str, status: int) -> Response:
    """Redirect back with a fresh code, remembering who logged in (for ``show_dialog``)."""
    sim.accounts.agree(user_id, request.client.client_id, request.scopes)
    code = sim.accounts.issue_code(
        request.client.client_id,
        request.redirect_uri,
        user_id,
        request.scopes,
        request.challenge,
    )
    location = with_query(request.redirect_uri, {"code": code, "state": request.state})
    response = RedirectResponse(location, status)
    response.set_cookie(USER_COOKIE, user_id, httponly=True, samesite="lax")
    return response


def routes(sim: World) -> list[Route]:
    """The accounts service's routes, bound to ``sim``."""

    async def authorize(request: Request) -> Response:
        sim.calls["authorize"] += 1
        parsed = parse_request(sim, request.query_params)
        if isinstance(parsed, Response):
            return parsed
        remembered = request.cookies.get(USER_COOKIE)
        if (
            not parsed.show_dialog
            and remembered is not None
            and sim.accounts.has_agreed(remembered, parsed.client.client_id, parsed.scopes)
        ):
            return approve(sim, parsed, remembered, 302)
        users = list(sim.accounts.users.values())
        selected = remembered if remembered in sim.accounts.users else sim.default_user
        html = consent_page(
            action=request.scope.get("root_path", "") + "/authorize",
            app_name=parsed.client.name,
            scopes=parsed.scopes,
            params=parsed.params,
            users=users,
            selected_user=selected,
        )
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    async def consent(request: Request) -> Response:
        sim.calls["consent"] += 1
        form = await read_form(request)
        parsed = parse_request(sim, form)
        if isinstance(parsed, Response):
            return parsed
        decision = form.get("decision")
        if decision == "cancel":
            params = {"error": "access_denied", "state": parsed.state}
            return RedirectResponse(with_query(parsed.redirect_uri, params), 303)
        user_id = form.get("user", sim.default_user)
        if decision != "agree" or user_id not in sim.accounts.users:
            return HTMLResponse(error_page("INVALID_REQUEST: Invalid consent form"), 400)
        return approve(sim, parsed, user_id, 303)

    async def token(request: Request) -> Response:
        sim.calls["token"] += 1
        form = await read_form(request)
        grant_type = form.get("grant_type", "")
        if grant_type in GRANT_TYPES:
            sim.calls[f"token:{grant_type}"] += 1
        fault = sim.faults.take("token")
        if fault is not None and (answer := await fault.answer()) is not None:
            return answer
        try:
            if grant_type not in GRANT_TYPES:
                raise TokenError("unsupported_grant_type", "grant_type parameter is missing")
            client, confidential = sim.accounts.authenticate(
                request.headers.get("authorization"), form
            )
            if (refusal := sim.limits.admit(client.client_id)) is not None:
                return refusal.response()
            if grant_type == "client_credentials":
                body = sim.accounts.app_token(client, confidential)
                return JSONResponse(body, headers={"Cache-Control": "no-store"})
            if grant_type == "authorization_code":
                grant = sim.accounts.exchange_code(client, confidential, form)
            else:
                grant = sim.accounts.refresh(client, confidential, form)
        except TokenError as e:
            return JSONResponse(e.as_json(), 400)
        return JSONResponse(grant.as_json(), headers={"Cache-Control": "no-store"})

    return [
        Route("/authorize", authorize, methods=["GET"]),
        Route("/authorize", consent, methods=["POST"]),
        Route("/api/token", token, methods=["POST"]),
    ]


async def read_form(request: Request) -> dict[str, str]:
    """A form-encoded body as a dict; empty for any other content type (no multipart needed)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return {}
    body = (await request.body()).decode("utf-8", "replace")
    return dict(parse_qsl(body, keep_blank_values=True))
