"""An account value with test defaults, for the store, the alerts and the CLI tests."""

from __future__ import annotations

from typing import Any

from nowplaying.store import Account


def account(
    aid: str = "alice",
    token: str = "refresh-1",
    *,
    display_name: str = "Alice",
    consented_at: float = 1000.0,
    **kw: Any,
) -> Account:
    """An account ``aid`` granted ``user-read-currently-playing`` with refresh token ``token``."""
    return Account(
        id=aid,
        display_name=display_name,
        refresh_token=token,
        scopes=frozenset({"user-read-currently-playing"}),
        consented_at=consented_at,
        **kw,
    )
