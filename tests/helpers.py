"""Helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures" / "spotify"


def fixture_json(name: str) -> Any:
    """A recorded Spotify payload from tests/fixtures/spotify (copied from ../shared)."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))
