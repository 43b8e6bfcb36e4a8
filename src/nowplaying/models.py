"""Values that cross boundaries: tokens, what is playing, whose account it is.

The sources turn upstream payloads into these; nothing else sees the raw ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
"""The reason of an upstream's long quota (Spotify's development-mode 429, hours long): a
:class:`~nowplaying.sources.base.RateLimited`'s and the stored app-wide pause's."""
RATE_LIMIT = "rate_limit"
"""The app-wide pause's reason for the rolling-window limit (seconds long)."""


class AccountStatus(StrEnum):
    """Whether an account's grant still works: the one encoding of "reconnect required" (the
    store keeps it, the engine's snapshots carry it, the wire's error slug is its value)."""

    ACTIVE = "active"
    RECONNECT_REQUIRED = "reconnect_required"


class SourceKind(StrEnum):
    """Where a widget learns what plays: the one spelling of a source's name (the store keeps
    it, the public JSON's ``source`` says it)."""

    SPOTIFY = "spotify"
    LASTFM = "lastfm"
    LISTENBRAINZ = "listenbrainz"
    PUSH = "push"


@dataclass(frozen=True, slots=True)
class Token:
    """An access token with its expiry, and the refresh token that goes with it (if any)."""

    access_token: str = field(repr=False)
    expires_at: float
    scope: frozenset[str] = frozenset()
    refresh_token: str | None = field(default=None, repr=False)
    token_type: str = "Bearer"

    def is_expired(self, now: float, leeway: float = 60.0) -> bool:
        """Whether the token is expired, or will be within ``leeway`` seconds."""
        return now >= self.expires_at - leeway


class Kind(StrEnum):
    """What Spotify says is playing."""

    TRACK = "track"
    EPISODE = "episode"
    AD = "ad"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Item:
    """A track or a podcast episode, reduced to what a widget shows."""

    kind: Kind
    title: str
    artists: tuple[str, ...]
    """Artist names for a track; the show name for an episode."""
    album: str | None
    """Album name for a track; the show name for an episode."""
    image_url: str | None
    """The widest image (album art, or the episode's own art)."""
    url: str | None
    """``external_urls.spotify``; absent for local files."""
    duration_ms: int
    id: str | None = None
    uri: str | None = None
    explicit: bool = False
    is_local: bool = False

    @property
    def artist(self) -> str:
        return ", ".join(self.artists)


@dataclass(frozen=True, slots=True)
class NowPlaying:
    """What an account is playing at ``timestamp`` (seconds since the epoch)."""

    is_playing: bool
    kind: Kind | None = None
    item: Item | None = None
    progress_ms: int | None = None
    """None when the source does not tell (Last.fm, most pushes)."""
    timestamp: float = 0.0
    source: SourceKind = SourceKind.SPOTIFY
    """Which of the widget's sources says so."""

    @property
    def active(self) -> bool:
        """Whether there is anything to show (a track, an episode or an ad, playing or paused)."""
        return self.item is not None or self.kind == Kind.AD

    @property
    def remaining_ms(self) -> int | None:
        """Time left in the item, when both duration and progress are known."""
        if self.item is None or self.progress_ms is None:
            return None
        return max(0, self.item.duration_ms - self.progress_ms)


NOTHING_PLAYING = NowPlaying(is_playing=False)


@dataclass(frozen=True, slots=True)
class Notice:
    """What a widget's viewers are told of one of its sources that cannot be read for a reason
    only its owner can change: ``kind`` ``private`` (Last.fm's error 17: the profile hides its
    recent listening)."""

    source: SourceKind
    kind: str


@dataclass(frozen=True, slots=True)
class PlayedItem:
    """One entry of recently played: a track and when it was played (seconds since the epoch)."""

    item: Item
    played_at: float


@dataclass(frozen=True, slots=True)
class Profile:
    """The Spotify user behind a grant."""

    id: str
    display_name: str
    url: str | None = None


@dataclass(frozen=True, slots=True)
class Grant:
    """What a completed authorization gives: the tokens and whose they are."""

    token: Token
    profile: Profile
