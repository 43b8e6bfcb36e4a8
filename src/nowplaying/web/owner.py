"""The owner's controls: ``/api/account`` and its POSTs, same-origin JSON for the home page.

Publishing is opt-in. Nothing here opens a refresh token; every change to a share link is
announced to every instance's public-id cache (:mod:`.published`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from nowplaying import schema
from nowplaying.config import Settings
from nowplaying.engine import accounts
from nowplaying.engine.problems import AccountProblems, Withdrawal
from nowplaying.models import SourceKind
from nowplaying.ops.alerts import GRANT_LIFETIME
from nowplaying.store import Account, AccountStatus, Pause, SourceLink
from nowplaying.web.errors import (
    PRIVATE,
    BadRequest,
    Conflict,
    CrossSite,
    NotConnected,
    NotFound,
    json_response,
)
from nowplaying.web.security import same_origin
from nowplaying.web.state import Services, services


def reconnect_by(account: Account) -> float:
    return account.consented_at + GRANT_LIFETIME


def share_links(svc: Services, public_id: str) -> schema.ShareLinks:
    base = f"{svc.public_origin}/p/{public_id}"
    return schema.ShareLinks(
        page=base,
        json_=f"{base}.json",
        svg=f"{base}.svg",
        events=f"{base}/events",
        open=f"{base}/open",
        recent=f"{base}/recent.svg",
    )


def pause_note(pause: Pause | None) -> str | None:
    """What the owner page says about Spotify's app-wide pause: only the long quota lockout.

    A rolling-window 429 passes in seconds and needs no words; ``QUOTA_EXCEEDED`` lasts hours.
    """
    if pause is None or not pause.quota:
        return None
    until = datetime.fromtimestamp(pause.until, UTC)
    return f"Spotify paused this app until {until:%H:%M} (UTC) on {until:%d %B %Y}."


PULLED = (SourceKind.LASTFM, SourceKind.LISTENBRAINZ)
"""The sources read by polling, whose refusals the owner page shows beside them."""
LABELS = {
    SourceKind.SPOTIFY: "Spotify",
    SourceKind.LASTFM: "Last.fm",
    SourceKind.LISTENBRAINZ: "ListenBrainz",
}
"""The sources an owner links with a sign-in, as the pages name them."""


def offered(settings: Settings) -> dict[SourceKind, str]:
    """The sources this server lets owners link or sign in with, and where each starts:
    Spotify unless turned off (the simulated one in demo mode), Last.fm when it has a key (or
    in demo mode), and ListenBrainz, which needs no key of the server's."""
    found = {SourceKind.SPOTIFY: "/login"} if settings.nowplaying_spotify else {}
    if settings.lastfm_configured:
        found[SourceKind.LASTFM] = "/login/lastfm"
    found[SourceKind.LISTENBRAINZ] = "/login/listenbrainz"
    return found


def linked_views(
    svc: Services, sources: Sequence[SourceLink]
) -> tuple[tuple[schema.LinkedSource, ...], tuple[schema.Connectable, ...]]:
    """The widget's linked sources, and the offered ones it has not linked (with their URL)."""
    problems = svc.runtime.problems
    linked = tuple(
        schema.LinkedSource.model_validate(
            {
                "kind": s.kind.value,
                "user_name": s.user_name,
                "status": "active" if s.status is AccountStatus.ACTIVE else "reconnect_required",
                "connected_at": datetime.fromtimestamp(int(s.connected_at), UTC),
                "problem": _problem(problems, s),
            }
        )
        for s in sources
        if s.kind in LABELS
    )
    have = {s.kind for s in sources}
    connect = tuple(
        schema.Connectable.model_validate({"kind": kind.value, "url": url})
        for kind, url in offered(svc.runtime.settings).items()
        if kind not in have
    )
    return linked, connect


def _problem(problems: AccountProblems | None, link: SourceLink) -> str | None:
    """The fix for a pull source's refusal of the widget (Spotify's has its own field)."""
    if problems is None or link.kind is SourceKind.SPOTIFY:
        return None
    refusal = problems.get(link.account_id, link.kind)
    return refusal.fix if refusal is not None else None


def describe(
    svc: Services,
    account: Account,
    *,
    reconsent_url: str | None = None,
    push_token: str | None = None,
    sources: Sequence[SourceLink] = (),
) -> schema.Account:
    """The ``/api/account`` object."""
    linked, connect = linked_views(svc, sources)
    pause = svc.runtime.hub.pause
    usage = svc.runtime.client.budget.last if svc.runtime.client.budget is not None else None
    return schema.Account(
        display_name=account.display_name,
        status="active" if account.status is AccountStatus.ACTIVE else "reconnect_required",
        published=account.public_id is not None,
        public_id=account.public_id,
        links=share_links(svc, account.public_id) if account.public_id else None,
        last_played=account.show_last_played,
        last_played_granted=svc.runtime.source.tells_history(account.scopes),
        # Whole seconds, as the page shows it.
        reconnect_by=datetime.fromtimestamp(int(reconnect_by(account)), UTC),
        reconnect_reason=account.reconnect_reason,
        paused_until=round(pause.until * 1000) if pause else None,
        pause_reason=pause.reason if pause else None,
        spotify_refusal=_refusal(svc, account.id),
        spotify_removed=tuple(
            schema.SpotifyRemoval.model_validate(
                {"endpoint": w.what, "disabled": w.disabled, "message": w.fix}
            )
            for w in withdrawals(svc)
        ),
        reconsent_url=reconsent_url,
        budget=schema.Budget.model_validate(asdict(usage)) if usage is not None else None,
        push_token=push_token,
        push=push_links(svc, push_token) if push_token else None,
        sources=linked,
        connect=connect,
    )


def push_links(svc: Services, token: str) -> schema.PushLinks:
    return schema.PushLinks(
        listenbrainz_url=svc.public_origin,
        web_scrobbler_url=f"{svc.public_origin}/hooks/web-scrobbler/{token}",
    )


def withdrawals(svc: Services) -> list[Withdrawal]:
    """The reads Spotify withdrew from the app (endpoints removed for development mode)."""
    return svc.runtime.problems.withdrawals() if svc.runtime.problems is not None else []


def _refusal(svc: Services, account_id: str) -> schema.SpotifyRefusal | None:
    """Spotify's development-mode 403 for the account, if any."""
    refusal = svc.runtime.problems.get(account_id) if svc.runtime.problems else None
    if refusal is None:
        return None
    # Validated: the kind is a plain str in problems.py, one of three slugs on the wire.
    return schema.SpotifyRefusal.model_validate({"kind": refusal.kind, "message": refusal.fix})


OwnerHandler = Callable[[Request, Services, Account], Awaitable[Response]]


def owner_route(
    *, write: bool
) -> Callable[[OwnerHandler], Callable[[Request], Awaitable[Response]]]:
    """Resolve the owner's account (and, for writes, check the origin) before ``fn`` runs."""

    def wrap(fn: OwnerHandler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            svc = services(request)
            if write and not same_origin(request, svc.public_origin):
                raise CrossSite("Cross-site requests are refused.")
            session = await svc.sessions.current(request)
            account = (
                await svc.runtime.store.get_account_info(session.account_id) if session else None
            )
            if account is None:
                raise NotConnected
            if svc.runtime.problems is not None:
                # another instance may have seen a refusal
                await svc.runtime.problems.load(account.id, *PULLED)
            return await fn(request, svc, account)

        return endpoint

    return wrap


@owner_route(write=False)
async def get_account(request: Request, svc: Services, account: Account) -> Response:
    return await _fresh(svc, account.id)


@owner_route(write=True)
async def rotate_push_token(request: Request, svc: Services, account: Account) -> Response:
    """A new push token: players still sending the old one are refused (401) from now on."""
    await accounts.rotate_push_token(svc.runtime, account.id)
    return await _fresh(svc, account.id)


@owner_route(write=True)
async def publish(request: Request, svc: Services, account: Account) -> Response:
    """Give the account a public id (publishing twice keeps the first one)."""
    await accounts.publish(svc.runtime, account)
    return await _fresh(svc, account.id)


@owner_route(write=True)
async def rotate(request: Request, svc: Services, account: Account) -> Response:
    """A new public id: every old link stops working at once."""
    await accounts.rotate(svc.runtime, account.id)
    return await _fresh(svc, account.id)


@owner_route(write=True)
async def unpublish(request: Request, svc: Services, account: Account) -> Response:
    await accounts.unpublish(svc.runtime, account.id)
    return await _fresh(svc, account.id)


@owner_route(write=True)
async def update_settings(request: Request, svc: Services, account: Account) -> Response:
    """``{"lastPlayed": bool}``. Turning it on without the scope asks the owner to re-consent."""
    try:
        body = json.loads(await request.body() or b"{}")
    except (ValueError, RecursionError):  # not JSON, or nested deeper than anyone means to
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("lastPlayed"), bool):
        raise BadRequest('Send {"lastPlayed": true|false}.')
    on: bool = body["lastPlayed"]
    await svc.runtime.store.set_show_last_played(account.id, on)
    await svc.published.forget(account.id)
    svc.runtime.hub.refresh_history(account.id)
    response = await _fresh(svc, account.id)
    if on and not svc.runtime.source.tells_history(account.scopes):
        return _json(
            describe(
                svc,
                replace(account, show_last_played=True),
                reconsent_url="/login?with=recently-played",
                push_token=await accounts.push_token(svc.runtime, account.id),
                sources=await svc.runtime.store.list_sources(account.id),
            )
        )
    return response


async def _fresh(svc: Services, account_id: str) -> Response:
    account = await svc.runtime.store.get_account_info(account_id)
    if account is None:  # disconnected meanwhile
        raise NotConnected
    token = await accounts.push_token(svc.runtime, account_id)
    sources = await svc.runtime.store.list_sources(account_id)
    return _json(describe(svc, account, push_token=token, sources=sources))


@owner_route(write=True)
async def unlink_source(request: Request, svc: Services, account: Account) -> Response:
    """``DELETE /api/account/sources/{kind}``. The last source the owner signs in with stays:
    409, saying so (Disconnect deletes the widget instead)."""
    kind = next((k for k in LABELS if k.value == request.path_params["kind"]), None)
    if kind is None:
        raise NotFound("No such source: spotify, lastfm or listenbrainz.")
    kinds = {s.kind for s in await svc.runtime.store.list_sources(account.id)}
    if kind not in kinds:
        raise NotFound(f"{LABELS[kind]} is not linked to this widget.")
    if not (kinds & set(LABELS)) - {kind}:
        raise Conflict(
            f"{LABELS[kind]} is the only way to sign in to this widget: link another source"
            " first, or use Disconnect to delete the widget."
        )
    await accounts.unlink_source(svc.runtime, account.id, kind)
    svc.sessions.forget_account(account.id)
    return await _fresh(svc, account.id)


def _json(view: schema.Account) -> Response:
    return json_response(view, headers=PRIVATE)
