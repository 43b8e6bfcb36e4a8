"""Reading pushes: ListenBrainz submissions within ListenBrainz's limits, Web Scrobbler events,
every field bounded, no pushed URL kept."""

from __future__ import annotations

import json

import pytest

from nowplaying.models import SourceKind
from nowplaying.sources import push

NOW = 1_000_000.0


def body(kind: str, *listens: object) -> bytes:
    return json.dumps({"listen_type": kind, "payload": list(listens)}).encode()


def meta(**info: object) -> dict[str, object]:
    return {
        "track_metadata": {
            "artist_name": "A",
            "track_name": "T",
            "additional_info": {"origin_url": "https://evil.example/x", **info},
        }
    }


def test_playing_now_lasts_its_duration_or_ten_minutes() -> None:
    (timed,) = push.listenbrainz(body("playing_now", meta(duration_ms=30_000)), NOW)
    assert timed.event is push.Event.PLAYING and timed.expires_at == NOW + 30
    (untimed,) = push.listenbrainz(body("playing_now", meta()), NOW)
    assert untimed.expires_at == NOW + push.PLAYING_NOW_MAX
    item = untimed.playing.item
    assert item is not None and item.url is None and item.image_url is None
    assert untimed.playing.source is SourceKind.PUSH and untimed.playing.progress_ms is None


def test_an_import_holds_at_most_1000_listens() -> None:
    one = {**meta(), "listened_at": 1}
    assert len(push.listenbrainz(body("import", *[one] * 1000), NOW)) == 1000
    with pytest.raises(push.Rejected, match="at most 1000"):
        push.listenbrainz(body("import", *[one] * 1001), NOW)


def test_long_text_is_cut_not_refused() -> None:
    listen = {"track_metadata": {"artist_name": "A", "track_name": "T" * 5000}}
    (got,) = push.listenbrainz(body("playing_now", listen), NOW)
    assert got.playing.item is not None and len(got.playing.item.title) <= 512


@pytest.mark.parametrize(
    "bad",
    [
        {"artist_name": "A", "track_name": 5},
        {"artist_name": " ", "track_name": "T"},
        {"artist_name": "A", "track_name": "T", "additional_info": {"duration_ms": "long"}},
        {"artist_name": "A", "track_name": "T", "additional_info": []},
    ],
)
def test_malformed_metadata_is_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(push.Rejected):
        push.listenbrainz(body("playing_now", {"track_metadata": bad}), NOW)


def test_web_scrobbler_prefers_processed_and_reads_progress() -> None:
    event = {
        "eventName": "nowplaying",
        "data": {
            "song": {
                "parsed": {"track": "raw", "artist": "A", "duration": 100, "currentTime": 10},
                "processed": {"track": "Clean", "artist": None},
            }
        },
    }
    got = push.web_scrobbler(json.dumps(event).encode(), NOW)
    assert got is not None and got.playing.item is not None
    assert (got.playing.item.title, got.playing.progress_ms) == ("Clean", 10_000)
    assert got.expires_at == NOW + 90


def test_web_scrobbler_loved_is_ignored() -> None:
    assert push.web_scrobbler(b'{"eventName": "loved"}', NOW) is None


RELEASE = "76DF3287-6CDA-33EB-8E9A-044B5E15FFDD"


@pytest.mark.parametrize("kind", ["playing_now", "single"])
def test_a_release_mbid_gives_the_archives_cover(kind: str) -> None:
    listen = {**meta(release_mbid=RELEASE), "listened_at": 1_700_000_000}
    (got,) = push.listenbrainz(body(kind, listen), NOW, "http://caa.test")
    assert got.playing.item is not None
    assert got.playing.item.image_url == (f"http://caa.test/release/{RELEASE.lower()}/front-250")


@pytest.mark.parametrize("bad", ["not-an-mbid", "../../admin", 42, f"{RELEASE}/../x"])
def test_a_malformed_release_mbid_gives_no_cover(bad: object) -> None:
    (got,) = push.listenbrainz(body("playing_now", meta(release_mbid=bad)), NOW)
    assert got.playing.item is not None and got.playing.item.image_url is None


def art_event(url: object) -> bytes:
    song = {"parsed": {"track": "T", "artist": "A", "trackArt": url}, "processed": {}}
    return json.dumps({"eventName": "nowplaying", "data": {"song": song}}).encode()


def test_web_scrobbler_track_art_only_where_allowed() -> None:
    """trackArt is the cover when the allow-list says so, and is dropped otherwise (or when
    no allow-list is given)."""
    allowed = "https://i.ytimg.com/vi/x/hq.jpg"

    def art(url: str) -> bool:
        return url.startswith("https://i.ytimg.com/")

    def image(event: bytes, **kw: object) -> str | None:
        got = push.web_scrobbler(event, NOW, **kw)  # type: ignore[arg-type]
        assert got is not None and got.playing.item is not None
        return got.playing.item.image_url

    assert image(art_event(allowed), art=art) == allowed
    assert image(art_event("https://tracker.example/p.gif"), art=art) is None
    assert image(art_event("javascript:alert(1)"), art=art) is None
    assert image(art_event(None), art=art) is None
    assert image(art_event(allowed)) is None
