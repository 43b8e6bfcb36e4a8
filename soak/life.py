"""What the life-cycle soak watches and records: its accounts and audience, and :class:`Life`,
everything it saw (read by :mod:`soak.lifecycle_report`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from soak import procs
from soak.audience import EventSourceViewer, Poller
from soak.checks import LogScan, Stored
from soak.cluster import Restart
from soak.lockout import Lockout
from soak.relogin import Relogin

USERS = [f"user{n}" for n in range(1, 7)]
PUBLISHED = USERS[:3]
RELOGIN = "user2"  # published: its public viewers and JSON must come back too
SSE_VIEWERS = 300
POLLERS = 30


@dataclass
class Skip:
    """A track change made while an instance was going away: every viewer must receive it."""

    at: float
    account: str
    title: str
    label: str


@dataclass
class Rotation:
    exit: int | None = None
    output: str = ""
    accounts: int = 0
    need_old_key: list[str] = field(default_factory=list)
    """Accounts the new key alone cannot open after ``rotate-key`` (target: none)."""
    error: str = ""


@dataclass
class Life:
    """Everything the life-cycle soak saw, for the checks and the report."""

    seed: int
    viewers: list[EventSourceViewer] = field(default_factory=list)
    pollers: list[Poller] = field(default_factory=list)
    watch_from: float = 0.0
    warm: float | None = None
    restarts: list[Restart] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    rotation: Rotation | None = None
    relogin: Relogin | None = None
    lockout: Lockout | None = None
    stale_viewers_in_lockout: tuple[int, int] = (0, 0)
    final_exits: list[procs.Exit] = field(default_factory=list)
    stored: dict[str, Stored] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    logs: dict[str, LogScan] = field(default_factory=dict)
    phases: list[tuple[str, float]] = field(default_factory=list)
    duration: float = 0.0
    aborted: str = ""
    loop_lag: list[tuple[float, float]] = field(default_factory=list)
    """(when, seconds late) of the soak's own event loop, sampled every 0.1 s: its timings are
    only as good as this (300 streams on a 2-CPU machine shared with the cluster)."""
