"""The view models: their wire shapes, the document generated from them, and refusals."""

from __future__ import annotations

import json

import pytest
from starlette.responses import Response

from nowplaying.engine.live import Snapshot, Status
from nowplaying.engine.snapshot import VIEW_REUSE_SECONDS
from nowplaying.models import Item, Kind, NowPlaying, PlayedItem, SourceKind
from nowplaying.schema import ErrorCode, error, parse_state, state
from nowplaying.web.errors import (
    MustReconnect,
    NotConnected,
    NotFound,
    ServiceUnavailable,
    json_response,
    raw_headers,
)
from nowplaying.web.openapi import SCHEMAS

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
SONG = Item(Kind.TRACK, "Ünïcode “title”", ("A", "B"), None, None, "https://x", 200_000)


def test_playing_keeps_its_keys_in_order_and_omits_absent_ones() -> None:
    """A track: every documented key, album null, ``at`` beside progress, no stale/lastPlayed."""
    np = NowPlaying(True, Kind.TRACK, SONG, progress_ms=1000, timestamp=NOW - 1)
    data = Snapshot(np, Status.LIVE, 1).to_json(NOW)
    assert list(data) == [
        "isPlaying",
        "type",
        "title",
        "artist",
        "album",
        "albumImageUrl",
        "songUrl",
        "progressMs",
        "durationMs",
        "at",
        "source",
    ]
    assert (data["artist"], data["album"], data["progressMs"]) == ("A, B", None, 2000)
    assert data["source"] == "spotify"
    assert data["at"] == int(NOW * 1000)


def test_a_track_of_unknown_progress_has_no_progress_and_names_its_source() -> None:
    """A pushed track: no ``progressMs`` (absent, not 0 or null), no ``at``, ``source`` push."""
    np = NowPlaying(True, Kind.TRACK, SONG, None, NOW, SourceKind.PUSH)
    data = Snapshot(np, Status.LIVE, 1).to_json(NOW)
    assert "progressMs" not in data and "at" not in data
    assert data["source"] == "push"


def test_unknown_progress_is_null_without_at() -> None:
    """An ad with no progress: ``progressMs`` null, no ``at`` (it would claim a position)."""
    ad = NowPlaying(True, Kind.AD, None, progress_ms=None)
    assert Snapshot(ad, Status.STALE, 1).to_json(NOW) == {
        "isPlaying": True,
        "type": "ad",
        "progressMs": None,
        "stale": True,
    }


def test_nothing_with_last_played() -> None:
    """Nothing plays: ``isPlaying`` false, the last track with its UTC time in seconds."""
    last = PlayedItem(SONG, NOW - 60.75)
    data = Snapshot(NowPlaying(False), Status.LIVE, 1, last_played=last).to_json(NOW)
    assert list(data) == ["isPlaying", "lastPlayed"]
    assert data["lastPlayed"]["playedAt"] == "2025-12-31T23:58:59Z"
    assert data["lastPlayed"]["type"] == "track"


@pytest.mark.parametrize(
    ("snap", "expected"),
    [
        (Snapshot.reconnect(1), {"error": "reconnect_required"}),
        (Snapshot(None, Status.STALE, 1), {"error": "unavailable", "stale": True}),
    ],
)
def test_error_states(snap: Snapshot, expected: dict[str, object]) -> None:
    assert snap.to_json(NOW) == expected


def test_body_is_the_compact_utf8_json_of_the_data() -> None:
    """What is served is byte for byte the compact JSON of the object (non-ASCII kept)."""
    np = NowPlaying(False, Kind.TRACK, SONG, progress_ms=5, timestamp=NOW)
    view = state(np, progress_ms=5, at=7)
    expected = json.dumps(view.data(), separators=(",", ":"), ensure_ascii=False).encode()
    assert view.body == expected
    assert "Ünïcode".encode() in view.body


def test_a_state_reads_back_as_itself() -> None:
    """parse_state is the inverse of serialising (clients and tests read what we send)."""
    np = NowPlaying(True, Kind.EPISODE, SONG, progress_ms=10, timestamp=NOW)
    view = Snapshot(np, Status.STALE, 3).view(NOW)
    assert parse_state(view.data()) == view


def test_the_document_is_generated_from_the_models() -> None:
    """Every error slug, every state and the account are in /openapi.json's components."""
    assert set(SCHEMAS["ErrorCode"]["enum"]) == {c.value for c in ErrorCode}
    assert SCHEMAS["Error"]["properties"]["error"] == {"$ref": "#/components/schemas/ErrorCode"}
    refs = [one["$ref"].rsplit("/", 1)[1] for one in SCHEMAS["PublicState"]["oneOf"]]
    assert refs == ["Playing", "Ad", "Nothing", "Error"]
    assert SCHEMAS["Playing"]["additionalProperties"] is False
    # An absent-when-unset field is documented with its real type only, never as null.
    assert SCHEMAS["Playing"]["properties"]["at"] == {
        "description": "Server time (ms) progressMs holds for.",
        "type": "integer",
    }
    assert "at" not in SCHEMAS["Playing"]["required"]


@pytest.mark.parametrize(
    ("refusal", "status", "slug"),
    [
        (NotConnected(), 401, "not_connected"),
        (MustReconnect(), 401, "reconnect_required"),
        (NotFound(), 404, "not_found"),
        (ServiceUnavailable("later", retry_after=0.2), 503, "unavailable"),
    ],
)
def test_each_refusal_has_its_status_and_slug(
    refusal: NotConnected | MustReconnect | NotFound | ServiceUnavailable, status: int, slug: str
) -> None:
    response = refusal.response({"Cache-Control": "no-store"})
    assert response.status_code == status
    assert json.loads(bytes(response.body))["error"] == slug
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "headers",
    [None, {}, {"Retry-After": "5", "Cache-Control": "no-store"}, {"X-Accel-Buffering": "no"}],
)
def test_a_json_body_has_the_headers_starlette_would_give_it(
    headers: dict[str, str] | None,
) -> None:
    """``json_response`` skips Starlette's per-response header work, not its result: the same
    headers (whether passed as a mapping or encoded beforehand), the view's own bytes."""
    view = error(ErrorCode.UNAVAILABLE, "Spotify is not answering.")
    expected = Response(view.body, 503, headers=headers, media_type="application/json")
    for given in (headers, raw_headers(headers) if headers is not None else None):
        response = json_response(view, 503, given)
        assert sorted(response.raw_headers) == sorted(expected.raw_headers)
        assert response.body is view.body
        assert response.status_code == 503


def test_unavailable_says_when_to_come_back() -> None:
    """Retry-After is whole seconds, at least one; the message is kept."""
    response = ServiceUnavailable("Spotify is not answering.", retry_after=0.2).response({})
    assert response.headers["retry-after"] == "1"
    assert json.loads(bytes(response.body)) == {
        "error": "unavailable",
        "message": "Spotify is not answering.",
    }
    assert ServiceUnavailable(retry_after=7.6).response({}).headers["retry-after"] == "8"


def test_a_view_is_handed_out_again_for_a_moment_and_says_when_it_holds() -> None:
    """Requests within ``reuse`` seconds of a view share it (and its bytes); its ``at`` is when
    it was made and progressMs where playback was then, so the widget's extrapolation is exact.
    Later (or earlier: a clock never goes back, but a test's may) a new view is made."""
    np = NowPlaying(True, Kind.TRACK, SONG, progress_ms=1000, timestamp=NOW)
    snap = Snapshot(np, Status.LIVE, 1)
    first = snap.view(NOW + 0.5)
    assert snap.view(NOW + 0.5 + VIEW_REUSE_SECONDS / 2) is first
    assert first.body is first.body  # rendered once
    assert json.loads(first.body)["at"] == int(NOW * 1000) + 500
    assert json.loads(first.body)["progressMs"] == 1500
    later = snap.view(NOW + 0.5 + 2 * VIEW_REUSE_SECONDS)
    assert later is not first
    assert json.loads(later.body)["progressMs"] == 1500 + round(2 * VIEW_REUSE_SECONDS * 1000)
    assert snap.view(NOW + 0.25) is not later  # never a view made after ``now``
    assert snap.view(NOW + 2, reuse=1.0) is not snap.view(NOW + 3.5, reuse=1.0)
    streamed = snap.view(NOW + 5, reuse=1.0)
    assert snap.view(NOW + 5.9, reuse=1.0) is streamed  # an event stream's longer moment
    assert snap == Snapshot(np, Status.LIVE, 1)  # the made view is no part of the value
