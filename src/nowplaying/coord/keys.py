"""Every Redis key name and the pub/sub channel's prefix (no Redis client here: a process
without ``NOWPLAYING_REDIS_URL`` never loads redis-py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

CHANNEL = "np:events"
"""The pub/sub channel's prefix; the database number follows (``np:events:15``)."""


def _named(kind: str) -> Callable[[object], str]:
    """The key of one ``kind`` per name: an account id, a lock's or an alert's name, a UTC day."""

    def key(name: object) -> str:
        return f"np:{kind}:{name}"

    return key


class Keys:
    """Every Redis key name: the app-wide pause and its reason, the call budget's window, learned
    limits and active accounts, the reads an upstream withdrew from the app; per name, a polling
    lease, a watch mark, the latest state, the shared access token, a lock, the upstream's
    refusal of an account, a claimed owner alert and the budget's count of one UTC day."""

    PAUSE = "np:pause"
    PAUSE_REASON = "np:pause:reason"
    BUDGET_CALLS = "np:budget:calls"
    BUDGET_LEARNED = "np:budget:learned"
    BUDGET_ACTIVE = "np:budget:active"
    INSTANCES = "np:instances"
    WITHDRAWN = "np:withdrawn"
    lease = staticmethod(_named("lease"))
    watch = staticmethod(_named("watch"))
    state = staticmethod(_named("state"))
    token = staticmethod(_named("token"))
    lock = staticmethod(_named("lock"))
    refusal = staticmethod(_named("refusal"))
    alert = staticmethod(_named("alert"))
    budget_day = staticmethod(_named("budget:day"))

    @staticmethod
    def ledger(name: str) -> LedgerKeys:
        """The keys of the call budget ledger ``name`` (``budget``: Spotify's, the keys above)."""
        return LedgerKeys(f"np:{name}:calls", f"np:{name}:learned", f"np:{name}:active", name)


@dataclass(frozen=True, slots=True)
class LedgerKeys:
    """One call budget's keys: its window of calls, what it learned, its active accounts and
    (per UTC day, :meth:`day`) its count of the day."""

    calls: str
    learned: str
    active: str
    name: str

    def day(self, day: int) -> str:
        return f"np:{self.name}:day:{day}"
