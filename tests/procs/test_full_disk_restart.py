"""A real ``nowplaying serve`` on a SQLite file on a real tmpfs, against a real simulator
process rotating refresh tokens: the disk fills while a refresh is on its way, the server is
stopped (SIGTERM) while it is still full, space is freed, the server starts again, and the
rotated token is the one it presents next (the rotated-away one would be ``invalid_grant``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness.disk import fill, small_disk
from harness.live_server import free_port
from harness.servers import sign_in
from soak.procs import Proc, server, simulator, wait_up

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def _until(check: Callable[[], Awaitable[bool]], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {seconds:g}s: {what}")


def _logged(proc: Proc, text: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return text in proc.log.read_text(errors="replace")

    return check


async def test_a_token_rotated_onto_a_full_disk_survives_a_restart(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "2m") as disk:
        await _scenario(tmp_path, disk)


async def _scenario(tmp_path: Path, disk: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    sim, sim_url = simulator(tmp_path, users=0, server_port=port)
    srv, _ = server(tmp_path, sim_url=sim_url, port=port, poll_seconds=1.0)
    srv.env["NOWPLAYING_DATABASE_URL"] = f"sqlite:///{disk}/nowplaying.sqlite3"
    try:
        sim.start()
        srv.start()
        async with httpx.AsyncClient(timeout=10) as http:

            async def control(path: str, body: dict[str, Any] | None = None) -> Any:
                answer = await http.post(f"{sim_url}/_control/{path}", json=body or {})
                answer.raise_for_status()
                return answer.json()

            async def refreshes() -> int:
                calls = (await http.get(f"{sim_url}/_control/calls")).json()
                return int(calls.get("token:refresh_token", 0))

            await wait_up(http, sim, f"{sim_url}/_control/calls")
            await wait_up(http, srv, f"{base}/healthz")
            cookie = await sign_in(base)

            async def live() -> bool:
                answer = await http.get(f"{base}/api/spotify", headers={"Cookie": cookie})
                return answer.status_code == 200 and "reconnect" not in answer.text

            await _until(live, "the widget live")
            await control("faults", {"endpoint": "token", "delay": 3})
            await control("tokens/expire")
            before = await refreshes()

            async def refreshing() -> bool:
                await live()  # a request keeps the account watched, so it is polled
                return await refreshes() > before

            await _until(refreshing, "a refresh on its way")
            filler = fill(disk)
            await _until(_logged(srv, "the store refused a rotated refresh token"), "refused")
            exit_ = await srv.stop_async()
            assert exit_ is not None and exit_.returncode == 0
            filler.unlink()
            srv.start()
            await wait_up(http, srv, f"{base}/healthz")
            await control("tokens/expire")
            before = await refreshes()

            async def refreshed_again() -> bool:
                return await live() and await refreshes() > before

            await _until(refreshed_again, "a refresh with the kept token")
            await _until(live, "the widget live again")
        text = srv.log.read_text(errors="replace")
        assert "grant is gone" not in text and "invalid_grant" not in text
        assert "kept sealed in" in text and "1 stored now" in text
    finally:
        srv.stop()
        sim.stop()
