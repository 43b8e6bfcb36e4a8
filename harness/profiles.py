"""Hypothesis profiles: derandomized in CI, a random search locally."""

from __future__ import annotations

import os
from collections.abc import Mapping

from hypothesis import settings


def register() -> None:
    """Register ``ci`` (the same examples every run) and ``dev`` (random, with a replay blob)."""
    settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
    settings.register_profile("dev", derandomize=False, print_blob=True)


def hypothesis_profile(environ: Mapping[str, str] = os.environ) -> str:
    """``ci`` in CI or when asked for by name, else ``dev`` (random search)."""
    if "HYPOTHESIS_PROFILE" in environ:
        return environ["HYPOTHESIS_PROFILE"]
    in_ci = environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    return "ci" if in_ci else "dev"
