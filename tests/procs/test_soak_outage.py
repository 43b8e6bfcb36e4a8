"""The Redis outage probe's short form (``python -m soak outage --short``): two real server
processes on PostgreSQL, a real redis-server of the test's own killed for 30 s and started again,
SSE viewers on both reconnecting with ``Last-Event-ID``, access tokens expiring mid-outage."""

from __future__ import annotations

import pytest
from soak.outage import SHORT, render, run

pytestmark = pytest.mark.slow


def test_a_redis_outage_loses_no_grant_and_keeps_ids_growing() -> None:
    results = run(SHORT)
    failed = [r for r in results if not r.held and not r.probe_only]
    assert not failed, render(results)
    names = {r.name for r in results}
    assert names >= {"both instances live", "ids grow", "JSON reached viewers", "0 grants lost"}
