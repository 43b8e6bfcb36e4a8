"""Checks of the sources other than Spotify, for ``nowplaying setup`` and ``nowplaying doctor``.

Last.fm: the key and secret answer a signed ``auth.getToken`` (a token nobody allows expires
unused); ListenBrainz: its API answers ``validate-token`` (for a token it does not know).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from nowplaying.clock import SystemClock
from nowplaying.sources.base import SourceError
from nowplaying.sources.lastfm import KeyRefused, LastFmClient, SecretRefused
from nowplaying.sources.listenbrainz import ListenBrainzClient

PROBE_TOKEN = "nowplaying-doctor-probe"
"""The token ListenBrainz is asked about: one it does not know (the answer is "invalid")."""


@dataclass(frozen=True, slots=True)
class Check:
    """A check's outcome (Spotify's credentials, a source's key): ``ok``, or why not; ``wrong``
    when the value itself was refused (rather than the service unreachable)."""

    ok: bool
    message: str
    wrong: bool = False


async def check_lastfm(
    http: httpx.AsyncClient, *, api_url: str, api_key: str, api_secret: str
) -> Check:
    """Whether Last.fm takes this API key and secret."""
    client = LastFmClient(
        http, SystemClock(), api_key=api_key, api_secret=api_secret, api_url=api_url
    )
    try:
        await client.check_key()
    except SecretRefused:
        return Check(False, "Last.fm refused the signature: the API secret is wrong", True)
    except KeyRefused as e:
        return Check(False, f"Last.fm refused the API key ({e})", True)
    except SourceError as e:
        return Check(False, f"could not check with Last.fm at {api_url}: {e}")
    return Check(True, "Last.fm accepted the API key and secret")


async def check_listenbrainz(http: httpx.AsyncClient, *, api_url: str) -> Check:
    """Whether ListenBrainz's API answers (no key of the server's is needed)."""
    client = ListenBrainzClient(http, SystemClock(), api_url=api_url)
    try:
        await client.validate_token(PROBE_TOKEN)
    except SourceError as e:
        return Check(False, f"could not reach ListenBrainz at {api_url}: {e}")
    return Check(True, f"ListenBrainz answers at {api_url}")
