"""The Cover Art Archive's front-cover URL: only for a well-formed MBID."""

from __future__ import annotations

import pytest

from nowplaying.sources import coverart

RELEASE = "76df3287-6cda-33eb-8e9a-044b5e15ffdd"


def test_front_is_the_250px_front_of_the_release() -> None:
    assert coverart.front("https://coverartarchive.org/", RELEASE.upper()) == (
        f"https://coverartarchive.org/release/{RELEASE}/front-250"
    )


@pytest.mark.parametrize("bad", [None, "", "x", 7, f"{RELEASE}?a=b", f" {RELEASE}", "../release"])
def test_no_front_without_an_mbid(bad: object) -> None:
    assert coverart.front(coverart.ARCHIVE_URL, bad) is None
