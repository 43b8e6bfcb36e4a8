"""The contract probe's short form (``python -m soak contract --short``): schemathesis against a
real server's ``/openapi.json`` with a published id, seeded and derandomized, finds nothing."""

from __future__ import annotations

import sys
from pathlib import Path

from soak.contract import SHORT, _invoke, render, run


def test_the_openapi_document_holds_under_schemathesis() -> None:
    outcomes = run(SHORT)
    assert [o.name for o in outcomes] == ["owner", "anonymous"], render(outcomes)
    assert all(o.held for o in outcomes), render(outcomes)


def test_a_run_past_its_deadline_is_stopped_and_says_what_it_ran(tmp_path: Path) -> None:
    """A schemathesis that never ends (here: one that says it finished a phase, then hangs) is
    stopped at the deadline and reported as not held, with the phases it finished."""
    hangs = (
        "import time; print(' ✅  Examples (in 1.0s)'); print(); print('  ✅ 8 passed',"
        " flush=True); time.sleep(600)"
    )
    outcome = _invoke("owner", [sys.executable, "-c", hangs], tmp_path, 2.0)
    assert not outcome.held
    assert "stopped at its deadline (2 s)" in outcome.summary
    assert "✅  Examples (in 1.0s): ✅ 8 passed" in outcome.summary
