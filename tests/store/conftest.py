"""The store every contract test runs on: a SQLite file, SQLite in memory, real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from harness.services import POSTGRES_URL, postgres_schema
from harness.stores import STORE_KEY

from nowplaying.crypto import TokenCipher
from nowplaying.store import PostgresStore, Store, open_store


@pytest.fixture(params=["sqlite-file", "sqlite-memory", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    cipher = TokenCipher(STORE_KEY)
    if request.param == "postgres":
        async for schema in postgres_schema():
            pg = PostgresStore(POSTGRES_URL, cipher=cipher, schema=schema)
            await pg.open()
            yield pg
            await pg.close()
        return
    url = f"sqlite:///{tmp_path}/np.sqlite3" if request.param == "sqlite-file" else "sqlite://"
    s = open_store(url, cipher=cipher)
    await s.open()
    yield s
    await s.close()
