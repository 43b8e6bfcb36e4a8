"""The edge probe's short form (``python -m soak edge --short``): a real server process under
slow headers, slow bodies, unfinished requests past its descriptor limit and stalled readers."""

from __future__ import annotations

import asyncio

from soak.edge import SHORT, render, run


def test_the_edge_holds_under_the_short_probe() -> None:
    results = asyncio.run(run(SHORT))
    failed = [r for r in results if not r.held and not r.timing]
    assert not failed, render(results)
    assert {r.name for r in results} >= {"slow headers", "stalled readers", "log"}
