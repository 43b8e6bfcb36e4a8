"""What the live engine knows about one account (:class:`Snapshot`), and its wire codec.

A snapshot is the engine's unit of change: viewers get one per change, other instances its wire
form; :meth:`Snapshot.differs` is the one definition of "a change viewers should see".
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from nowplaying import schema
from nowplaying.models import (
    AccountStatus,
    Item,
    Kind,
    Notice,
    NowPlaying,
    PlayedItem,
    SourceKind,
)

__all__ = ["NO_DATA", "Snapshot", "Status", "progress_at", "view_of"]

SEEK_MS = 3000
"""Progress this far from where the last state predicted it is a seek: viewers are told."""
VIEW_REUSE_SECONDS = 0.01
"""A snapshot's JSON view is made again for a request this long after the last one was made."""
NO_DATA = schema.error(schema.ErrorCode.UNAVAILABLE, stale=True)
"""What viewers are shown while nothing is known yet (no poll has succeeded); each route picks
its status for it (the JSON routes 503 with Retry-After, an event stream sends it as an event)."""


Inputs = tuple[NowPlaying | None, NowPlaying | None]
"""What a snapshot's ``playing`` was merged from: the polled state and the push in force."""


class Status(StrEnum):
    """How far the data can be trusted (whether the grant works is :attr:`Snapshot.grant`)."""

    LIVE = "live"
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one account plays, as last seen, and how trustworthy that is."""

    playing: NowPlaying | None
    """None until a poll has succeeded."""
    status: Status
    version: int
    retry_after: float | None = None
    last_played: PlayedItem | None = None
    """The last track played, when the owner shows it and nothing plays now."""
    grant: AccountStatus = AccountStatus.ACTIVE
    """``RECONNECT_REQUIRED``: the grant is gone, nothing is polled until a new one is made."""
    inputs: Inputs | None = field(default=None, compare=False)
    """What another instance merged ``playing`` from (read off the wire; None when it did not
    say: an earlier version)."""
    notice: Notice | None = None
    """A source whose owner keeps it private (Last.fm's error 17), shown while nothing plays."""
    _views: list[tuple[float, schema.State]] = field(
        default_factory=list, init=False, repr=False, compare=False
    )
    """The last view made (when, and the view), for :meth:`view` to hand out again."""

    @classmethod
    def reconnect(cls, version: int) -> Snapshot:
        """The grant is gone: no data until the owner connects again."""
        return cls(None, Status.STALE, version, grant=AccountStatus.RECONNECT_REQUIRED)

    @property
    def grant_gone(self) -> bool:
        return self.grant is AccountStatus.RECONNECT_REQUIRED

    def view(self, now: float, reuse: float = VIEW_REUSE_SECONDS) -> schema.State:
        """The ``/api/spotify`` state, progress extrapolated to ``now``.

        A view made less than ``reuse`` seconds before ``now`` is handed out again: its ``at``
        says when its progress holds (the widget moves on from there with its own clock), so it
        is as true as a new one, and the requests of one moment (the viewers of one change, for
        an event stream) share one view and the bytes it renders to."""
        made = self._views
        if made and 0 <= now - made[0][0] < reuse:
            return made[0][1]
        view = self._view(now)
        made[:] = [(now, view)]
        return view

    def _view(self, now: float) -> schema.State:
        if self.grant_gone:
            return schema.error(schema.ErrorCode.RECONNECT_REQUIRED)
        if self.playing is None:
            return NO_DATA
        return schema.state(
            self.playing,
            progress_ms=progress_at(self.playing, now),
            at=int(now * 1000),  # when progressMs holds, for the widget's local clock
            stale=self.status is Status.STALE,
            last=self.last_played,
            notice=self.notice,
        )

    def to_json(self, now: float) -> dict[str, Any]:
        """The ``/api/spotify`` object, progress extrapolated to ``now``."""
        return self.view(now).data()

    def differs(self, new: Snapshot, now: float) -> bool:
        """Whether ``new`` tells viewers something this one did not: another status, item,
        play/pause, last played track, or a seek (a poll that only moved progress does not)."""
        return (
            self.status is not new.status
            or self.grant is not new.grant
            or _identity(self.playing) != _identity(new.playing)
            or self.last_played != new.last_played
            or self.notice != new.notice
            or _jumped(self.playing, new.playing, now)
        )

    # -- the wire codec (between instances) ----------------------------------------------------

    def to_wire(self, inputs: Inputs | None = None) -> str:
        """This snapshot as compact JSON, for other instances, with what it was merged from
        (``pushed`` always, null for no push in force; ``polled`` only beside a push, as it is
        ``playing`` otherwise)."""
        last = self.last_played
        data: dict[str, Any] = {
            "status": str(self.grant if self.grant_gone else self.status),
            "version": self.version,
            "retry_after": self.retry_after,
            "playing": _playing_wire(self.playing) if self.playing else None,
            "last": {"item": asdict(last.item), "at": last.played_at} if last else None,
            "notice": asdict(self.notice) if self.notice else None,
        }
        if inputs is not None:
            polled, pushed = inputs
            data["pushed"] = _playing_wire(pushed) if pushed else None
            if pushed is not None:
                data["polled"] = _playing_wire(polled) if polled else None
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_wire(cls, payload: str | bytes) -> Snapshot:
        """The inverse of :meth:`to_wire`; raises ValueError/KeyError/TypeError on junk."""
        data = json.loads(payload)
        playing = _playing_of(data["playing"])
        last = data["last"]
        notice = data.get("notice")  # absent from an earlier version's wire
        gone = data["status"] == AccountStatus.RECONNECT_REQUIRED
        inputs = None
        if "pushed" in data:  # absent from an earlier version's wire
            pushed = _playing_of(data["pushed"])
            inputs = (_playing_of(data["polled"]) if pushed else playing, pushed)
        return cls(
            playing=playing,
            inputs=inputs,
            status=Status.STALE if gone else Status(data["status"]),
            version=int(data["version"]),
            retry_after=data["retry_after"],
            last_played=PlayedItem(_item(last["item"]), float(last["at"])) if last else None,
            grant=AccountStatus.RECONNECT_REQUIRED if gone else AccountStatus.ACTIVE,
            notice=Notice(SourceKind(notice["source"]), str(notice["kind"])) if notice else None,
        )


def view_of(snap: Snapshot | None, now: float, reuse: float = VIEW_REUSE_SECONDS) -> schema.State:
    """What a viewer is shown of ``snap`` at ``now``: the one decision between data, "reconnect
    required" and "no data yet" (:data:`NO_DATA`) for every route."""
    return NO_DATA if snap is None else snap.view(now, reuse)


def progress_at(playing: NowPlaying, now: float) -> int | None:
    """Where playback is at ``now``, moving on from the measured progress while it plays."""
    if playing.progress_ms is None:
        return None
    if not playing.is_playing:
        return playing.progress_ms
    moved = playing.progress_ms + round(max(0.0, now - playing.timestamp) * 1000)
    return min(moved, playing.item.duration_ms) if playing.item else moved


def _identity(playing: NowPlaying | None) -> tuple[object, ...]:
    if playing is None:
        return (None,)
    item = playing.item
    key = (item.uri or item.id or item.title, item.title) if item else None
    return (playing.kind, key, playing.is_playing, playing.active)


def _jumped(old: NowPlaying | None, new: NowPlaying | None, now: float) -> bool:
    """A seek: progress is more than :data:`SEEK_MS` away from where the old state predicted."""
    if old is None or new is None or new.progress_ms is None:
        return False
    predicted = progress_at(old, now)
    return predicted is not None and abs(predicted - new.progress_ms) > SEEK_MS


def _playing_wire(np: NowPlaying) -> dict[str, Any]:
    return {
        "is_playing": np.is_playing,
        "kind": str(np.kind) if np.kind else None,
        "item": asdict(np.item) if np.item else None,
        "progress_ms": np.progress_ms,
        "timestamp": np.timestamp,
        "source": str(np.source),
    }


def _playing_of(data: dict[str, Any] | None) -> NowPlaying | None:
    if not data:
        return None
    return NowPlaying(
        is_playing=bool(data["is_playing"]),
        kind=Kind(data["kind"]) if data["kind"] else None,
        item=_item(data["item"]) if data["item"] else None,
        progress_ms=data["progress_ms"],
        timestamp=float(data["timestamp"]),
        # Absent from an earlier version's wire: that one knew only Spotify.
        source=SourceKind(data.get("source", SourceKind.SPOTIFY)),
    )


def _item(data: dict[str, Any]) -> Item:
    return Item(**{**data, "kind": Kind(data["kind"]), "artists": tuple(data["artists"])})
