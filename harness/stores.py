"""A real store behind a probe: every call counted, the whole store taken down, or chosen calls
made to fail; and a cipher that records what it opens. Handed to ``create_app(store=...)``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable
from typing import Any

from nowplaying.crypto import TokenCipher
from nowplaying.store import Store, StoreError

STORE_KEY = "store-test-key-" * 3
"""The secret key of the store tests' stores."""


class ProbedStore:
    """Passes every call to ``inner`` and counts it by method name. While ``down``, every call
    raises StoreError (as PostgreSQL's would); a method named in ``failing`` raises that error."""

    def __init__(self, inner: Store, cipher: CountingCipher) -> None:
        self.inner = inner
        self.cipher = cipher
        self.calls: Counter[str] = Counter()
        self.down = False
        self.failing: dict[str, Exception] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            if self.down:
                raise StoreError("PostgreSQL unavailable (ConnectionRefusedError)")
            if name in self.failing:
                raise self.failing[name]
            result: Awaitable[Any] = attr(*args, **kwargs)
            return await result

        return call


class CountingCipher:
    """Passes every call to ``inner``; ``opened`` lists the context of each token it opened."""

    def __init__(self, inner: TokenCipher) -> None:
        self.inner = inner
        self.opened: list[str] = []

    def open(self, sealed: str, *, context: str) -> str:
        self.opened.append(context)
        return self.inner.open(sealed, context=context)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
