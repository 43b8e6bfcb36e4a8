"""The contract probe's short form (``python -m soak contract --short``): schemathesis against a
real server's ``/openapi.json`` with a published id, seeded and derandomized, finds nothing."""

from __future__ import annotations

from soak.contract import SHORT, render, run


def test_the_openapi_document_holds_under_schemathesis() -> None:
    outcomes = run(SHORT)
    assert [o.name for o in outcomes] == ["owner", "anonymous"], render(outcomes)
    assert all(o.held for o in outcomes), render(outcomes)
