"""The Hypothesis profile: derandomized in CI, a random search locally."""

from __future__ import annotations

import pytest
from harness.profiles import hypothesis_profile
from hypothesis import settings


@pytest.mark.parametrize(
    ("environ", "profile"),
    [
        ({"CI": "true"}, "ci"),
        ({"CI": "1"}, "ci"),
        ({"CI": "false"}, "dev"),
        ({}, "dev"),
        ({"HYPOTHESIS_PROFILE": "ci"}, "ci"),
        ({"CI": "true", "HYPOTHESIS_PROFILE": "dev"}, "dev"),
    ],
)
def test_ci_runs_are_derandomized(environ: dict[str, str], profile: str) -> None:
    """CI (or HYPOTHESIS_PROFILE=ci) picks the derandomized profile; local runs search."""
    assert hypothesis_profile(environ) == profile
    chosen = settings.get_profile(profile)
    assert chosen.derandomize is (profile == "ci")
    if profile == "ci":
        assert chosen.database is None
