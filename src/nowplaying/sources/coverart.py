"""The Cover Art Archive: a release's front cover, by its MusicBrainz id.

``{COVERART_URL}/release/{mbid}/front-250`` answers a 307 to the image on archive.org (404 when
the release has none); the cover fetcher follows that redirect within its allow-list
(:mod:`nowplaying.cards.covers`), and a browser follows it by itself.
"""

from __future__ import annotations

import re

ARCHIVE_URL = "https://coverartarchive.org"
"""The archive's own address (``COVERART_URL``'s default)."""
MBID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
"""A MusicBrainz id (a UUID)."""


def mbid(value: object) -> str | None:
    """``value`` as a MusicBrainz id in lower case, or None if it is not one."""
    return value.lower() if isinstance(value, str) and MBID.fullmatch(value) else None


def front(base: str, release_mbid: object) -> str | None:
    """The 250 px front cover of release ``release_mbid`` at the archive ``base``; None
    without a well-formed id (nothing of a pushed string reaches the URL otherwise)."""
    found = mbid(release_mbid)
    return f"{base.rstrip('/')}/release/{found}/front-250" if found else None
