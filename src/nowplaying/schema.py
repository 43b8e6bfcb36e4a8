"""The JSON the app answers with, defined once: what someone plays, errors, the owner's account.

``/api/spotify``, the public JSON, every SSE event and ``/openapi.json`` come from these models,
and the cards read them::

    State = Playing | Ad | Nothing | Error      one answer about an account
    Nothing.last_played: LastPlayed             when the owner shows it
    Error.error: ErrorCode                      the one list of error slugs

Fields absent rather than null on the wire (``at``, ``stale``, ``lastPlayed``, ``message``) are
left out of the JSON when unset, and the schema does not offer null for them.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.alias_generators import to_camel
from pydantic.json_schema import SkipJsonSchema

from nowplaying.models import AccountStatus

if TYPE_CHECKING:
    from nowplaying.models import Notice, NowPlaying, PlayedItem

__all__ = [
    "Account",
    "Ad",
    "Connectable",
    "Error",
    "ErrorCode",
    "LastPlayed",
    "LinkedSource",
    "Nothing",
    "Playing",
    "Recent",
    "State",
    "View",
    "error",
    "last_played",
    "parse_state",
    "state",
]


class ErrorCode(StrEnum):
    """Every ``error`` slug the app answers with."""

    NOT_CONNECTED = "not_connected"
    RECONNECT_REQUIRED = AccountStatus.RECONNECT_REQUIRED.value
    UNAVAILABLE = "unavailable"
    BUSY = "busy"
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    BAD_REQUEST = "bad_request"
    TOO_MANY_REQUESTS = "too_many_requests"
    BODY_TOO_LARGE = "body_too_large"
    HEADERS_TOO_LARGE = "headers_too_large"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_IMPLEMENTED = "not_implemented"
    UNAUTHORIZED = "unauthorized"
    CONFLICT = "conflict"
    INTERNAL = "internal"
    ERROR = "error"


def _unset(value: object) -> bool:
    return value is None


def _absent(description: str | None = None) -> Any:
    """A field that is left out (not null) when unset: the schema says only its real type."""
    return Field(default=None, exclude_if=_unset, description=description)


def _type() -> Any:
    # ``kind`` in Python, ``type`` on the wire (a name a constructor argument should not shadow).
    return Field(serialization_alias="type", validation_alias="type")


class View(BaseModel):
    """A JSON answer: camelCase on the wire, no other keys, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        frozen=True,
    )

    def data(self) -> dict[str, Any]:
        """The JSON object, as Python values."""
        return self.model_dump(mode="json")

    @functools.cached_property
    def body(self) -> bytes:
        """The JSON text (compact, UTF-8), as served: rendered once per view (it is immutable),
        so every answer that shares a view shares its bytes."""
        return self.model_dump_json().encode()


class Playing(View):
    """A track or episode, playing or paused."""

    is_playing: bool
    kind: Literal["track", "episode"] = _type()
    title: str
    artist: str = Field(description="Artists joined by ', '; the show.")
    album: str | None = None
    album_image_url: str | None = None
    song_url: str | None = None
    progress_ms: int | SkipJsonSchema[None] = _absent(
        "Where playback is (ms); absent when the source does not tell (Last.fm, most pushes)."
    )
    duration_ms: int
    at: int | SkipJsonSchema[None] = _absent("Server time (ms) progressMs holds for.")
    stale: Literal[True] | SkipJsonSchema[None] = _absent()
    source: Literal["spotify", "lastfm", "listenbrainz", "push"] = Field(
        default="spotify", description="Which of the widget's sources says so."
    )


class Ad(View):
    """An advertisement: Spotify tells nothing about it."""

    is_playing: bool
    kind: Literal["ad"] = _type()
    progress_ms: int | None = None
    at: int | SkipJsonSchema[None] = _absent()
    stale: Literal[True] | SkipJsonSchema[None] = _absent()


class LastPlayed(View):
    """The last track played, shown while nothing plays."""

    kind: Literal["track", "episode"] = _type()
    title: str
    artist: str
    album: str | None = None
    album_image_url: str | None = None
    song_url: str | None = None
    played_at: datetime


class SourceNotice(View):
    """A source of the widget that cannot be shown, for a reason only its owner can change."""

    source: Literal["lastfm", "listenbrainz"]
    kind: Literal["private"] = Field(
        description="private: the Last.fm profile hides its recent listening (error 17)."
    )
    message: str = Field(description="For people: 'Listening is private on Last.fm'.")


class Nothing(View):
    """Nothing plays."""

    is_playing: Literal[False]
    last_played: LastPlayed | SkipJsonSchema[None] = _absent()
    stale: Literal[True] | SkipJsonSchema[None] = _absent()
    notice: SourceNotice | SkipJsonSchema[None] = _absent(
        "Why a source shows nothing (its profile is private), when that is why nothing shows."
    )


class Recent(View):
    """The recently-played list: the track playing now (when one plays), then the last ones."""

    now_playing: Playing | SkipJsonSchema[None] = _absent()
    items: tuple[LastPlayed, ...] = Field(description="Newest first.")


class Error(View):
    """The error envelope (and, on public links and streams, an error state as data)."""

    error: ErrorCode
    message: str | SkipJsonSchema[None] = _absent()
    stale: Literal[True] | SkipJsonSchema[None] = _absent()


class WebhookCreated(View):
    """A new webhook: its id and its signing secret, shown this once."""

    id: str
    url: str
    secret: str = Field(
        description="whsec_...: verify deliveries with any Standard Webhooks library."
    )


class WebhookDelivery(View):
    """One event sent (or being sent, or refused) to a webhook."""

    event: str
    at: datetime
    status: Literal["pending", "delivered", "failed", "refused"]
    attempts: int
    detail: str


class WebhookInfo(View):
    """A webhook and its recent deliveries, newest first (the secret is never shown again)."""

    id: str
    url: str
    created_at: datetime
    deliveries: tuple[WebhookDelivery, ...]


class Webhooks(View):
    """The owner's webhooks (at most 5)."""

    webhooks: tuple[WebhookInfo, ...]


class OEmbed(View):
    """An oEmbed answer (https://oembed.com, type ``rich``): its keys are the spec's snake_case."""

    model_config = ConfigDict(alias_generator=None)

    version: Literal["1.0"]
    kind: Literal["rich"] = _type()
    title: str
    provider_name: str
    provider_url: str
    html: str
    width: int
    height: int
    thumbnail_url: str
    thumbnail_width: int
    thumbnail_height: int
    cache_age: int


State = Playing | Ad | Nothing | Error
"""One answer about an account: ``/api/spotify``, ``/p/{id}.json``, an SSE event, a card."""

_STATE: TypeAdapter[State] = TypeAdapter(State)


def parse_state(data: object) -> State:
    """A state from its JSON object (raises ``pydantic.ValidationError``): for clients, tests."""
    return _STATE.validate_python(data)


class ShareLinks(View):
    page: str
    json_: str = Field(serialization_alias="json", validation_alias="json")
    svg: str
    events: str
    open: str
    recent: str = Field(description="The recently-played card (shown when last played is on).")


class PushLinks(View):
    """Where players push what plays: a ListenBrainz server URL (with the token as the user
    token) and Web Scrobbler's webhook URL (the token in it)."""

    listenbrainz_url: str = Field(description="The custom ListenBrainz URL players are given.")
    web_scrobbler_url: str = Field(description="Web Scrobbler's webhook URL for this widget.")


class SpotifyRefusal(View):
    """Spotify's development-mode 403 for an account, and what the owner can do about it."""

    kind: Literal["not_registered", "premium_required", "forbidden"]
    message: str


class SpotifyRemoval(View):
    """An endpoint Spotify removed for development-mode apps: disabled for the app, not paused."""

    endpoint: Literal["currently-playing", "recently-played"]
    disabled: str = Field(description="What the widget goes without.")
    message: str = Field(description="What it means and what restores it.")


class Budget(View):
    """The call budget in use (``nowplaying.sources.budget``), on ``/healthz`` and
    ``/api/account``."""

    per_window: int = Field(description="Calls allowed per 30 s now (lower while it learns).")
    configured_per_window: int
    used_window: int = Field(description="Calls made in the last 30 s, on every instance.")
    per_day: int
    configured_per_day: int
    used_day: int = Field(description="Calls made today (UTC).")
    accounts: int = Field(description="Accounts being polled.")
    blocked_until: float = Field(description="No call before then (epoch s; 0: none).")


LinkableKind = Literal["spotify", "lastfm", "listenbrainz"]
"""A source an owner links with a sign-in (a push needs none)."""


class LinkedSource(View):
    """A source linked to the widget: which, the user there, whether it still works. Its
    secret never leaves the server."""

    kind: LinkableKind
    user_name: str
    status: Literal["active", "reconnect_required"]
    connected_at: datetime
    problem: str | SkipJsonSchema[None] = _absent(
        "What the source refuses and how to fix it (a private Last.fm profile, a refused key),"
        " while it does."
    )


class Connectable(View):
    """A source this server offers that the widget has not linked, and where to link it."""

    kind: LinkableKind
    url: str = Field(description="The path the owner's browser opens to link it.")


class Account(View):
    """The ``/api/account`` object."""

    display_name: str
    status: Literal["active", "reconnect_required"]
    published: bool
    public_id: str | None
    links: ShareLinks | None
    last_played: bool | SkipJsonSchema[None] = _absent()
    last_played_granted: bool | SkipJsonSchema[None] = _absent()
    reconnect_by: datetime
    reconnect_reason: Literal["unknown_key", "revoked"] | None = Field(
        default=None,
        description="Why a reconnect is needed: the grant was sealed with a secret key this"
        " server does not have, or Spotify refused it.",
    )
    paused_until: int | None = Field(
        default=None, description="Spotify's app-wide pause ends then (epoch ms); null: none."
    )
    pause_reason: str | None = Field(
        default=None, description="QUOTA_EXCEEDED (hours long) or rate_limit (seconds)."
    )
    reconsent_url: str | SkipJsonSchema[None] = _absent()
    spotify_refusal: SpotifyRefusal | None = Field(
        default=None,
        description="Spotify's development-mode refusal (user not registered under User"
        " Management, or the app owner without Premium) until Spotify answers again.",
    )
    spotify_removed: tuple[SpotifyRemoval, ...] = Field(
        default=(),
        description="Endpoints Spotify no longer serves to this app (development mode, since"
        " April 2026): each is disabled, not retried; empty when none.",
    )
    budget: Budget | None = Field(
        default=None, description="The call budget as the poller last read it; null: not yet."
    )
    push_token: str | SkipJsonSchema[None] = Field(
        default=None,
        description="The token players push with (as a ListenBrainz user token, or in the"
        " webhook URL); POST /api/account/push-token makes a new one.",
    )
    push: PushLinks | SkipJsonSchema[None] = _absent()
    sources: tuple[LinkedSource, ...] = Field(
        default=(),
        description="The linked sources, by kind; DELETE /api/account/sources/{kind} unlinks one.",
    )
    connect: tuple[Connectable, ...] = Field(
        default=(), description="The sources offered here that are not linked yet."
    )


def error(code: ErrorCode, message: str | None = None, *, stale: bool = False) -> Error:
    return Error(error=code, message=message, stale=True if stale else None)


def state(
    playing: NowPlaying,
    *,
    progress_ms: int | None,
    at: int | None,
    stale: bool = False,
    last: PlayedItem | None = None,
    notice: Notice | None = None,
) -> Playing | Ad | Nothing:
    """The view of what plays, with ``progress_ms`` as of server time ``at`` (ms) when known.

    ``last`` and ``notice`` are shown only while nothing plays; ``at`` only beside a known
    progress.
    """
    flag: Literal[True] | None = True if stale else None
    if not playing.active:
        return Nothing(
            is_playing=False,
            last_played=last_played(last) if last else None,
            stale=flag,
            notice=source_notice(notice) if notice else None,
        )
    when = at if progress_ms is not None else None
    it = playing.item
    if it is None:  # an ad
        return Ad(
            is_playing=playing.is_playing, kind="ad", progress_ms=progress_ms, at=when, stale=flag
        )
    return Playing(
        is_playing=playing.is_playing,
        kind="episode" if it.kind == "episode" else "track",
        title=it.title,
        artist=it.artist,
        album=it.album,
        album_image_url=it.image_url,
        song_url=it.url,
        progress_ms=progress_ms,
        duration_ms=it.duration_ms,
        at=when,
        stale=flag,
        source=playing.source.value,
    )


def last_played(played: PlayedItem) -> LastPlayed:
    it = played.item
    return LastPlayed(
        kind="episode" if it.kind == "episode" else "track",
        title=it.title,
        artist=it.artist,
        album=it.album,
        album_image_url=it.image_url,
        song_url=it.url,
        played_at=datetime.fromtimestamp(int(played.played_at), UTC),
    )


SOURCE_NAMES = {"spotify": "Spotify", "lastfm": "Last.fm", "listenbrainz": "ListenBrainz"}
"""How each source is named to people."""


def source_notice(notice: Notice) -> SourceNotice:
    """The view of a source's notice (only ``private`` is shown to viewers)."""
    source: Literal["lastfm", "listenbrainz"] = (
        "listenbrainz" if notice.source == "listenbrainz" else "lastfm"
    )
    return SourceNotice(
        source=source, kind="private", message=f"Listening is private on {SOURCE_NAMES[source]}"
    )
