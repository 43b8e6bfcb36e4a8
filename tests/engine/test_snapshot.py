"""A snapshot's grant: "reconnect required" is the account status's one encoding, on the wire
between instances (as every version wrote it), in the view and in what counts as a change."""

from __future__ import annotations

import json

from nowplaying.engine.snapshot import Snapshot, Status
from nowplaying.models import AccountStatus, Item, Kind, NowPlaying, SourceKind
from nowplaying.schema import ErrorCode


def test_reconnect_required_is_one_value_everywhere() -> None:
    values = {ErrorCode.RECONNECT_REQUIRED.value, AccountStatus.RECONNECT_REQUIRED.value}
    assert values == {"reconnect_required"}
    gone = Snapshot.reconnect(3)
    assert gone.grant is AccountStatus.RECONNECT_REQUIRED and gone.grant_gone
    assert gone.view(0.0).data() == {"error": "reconnect_required"}


def test_the_wire_keeps_the_status_earlier_versions_send_and_read() -> None:
    """Instances of a rolling deploy read each other: a gone grant travels as that status."""
    gone = Snapshot.reconnect(3)
    assert json.loads(gone.to_wire())["status"] == "reconnect_required"
    assert Snapshot.from_wire(gone.to_wire()) == gone
    old = (
        '{"status":"reconnect_required","version":9,"retry_after":null,"playing":null,"last":null}'
    )
    assert Snapshot.from_wire(old) == Snapshot.reconnect(9)
    stale = Snapshot(None, Status.STALE, 4)
    assert Snapshot.from_wire(stale.to_wire()) == stale and not stale.grant_gone


def test_a_grant_gone_or_back_is_a_change() -> None:
    stale = Snapshot(None, Status.STALE, 1)
    assert stale.differs(Snapshot.reconnect(2), 0.0)
    assert Snapshot.reconnect(2).differs(stale, 0.0)
    assert not Snapshot.reconnect(2).differs(Snapshot.reconnect(3), 0.0)


def test_the_wire_says_what_a_state_was_merged_from() -> None:
    """The push in force (or none) and, beside a push, the polled state travel with a snapshot,
    so every instance holds the same push; an earlier version's wire says nothing of them."""
    song = Item(Kind.TRACK, "polled", ("a",), None, None, None, 200_000, uri="u")
    polled = NowPlaying(True, Kind.TRACK, song, 1_000, 5.0)
    item = Item(Kind.TRACK, "pushed", ("p",), None, None, None, 0)
    push = NowPlaying(True, Kind.TRACK, item, None, 6.0, SourceKind.PUSH)
    snap = Snapshot(push, Status.LIVE, 7)
    assert Snapshot.from_wire(snap.to_wire((polled, push))).inputs == (polled, push)
    plain = Snapshot(polled, Status.LIVE, 8)
    wire = plain.to_wire((polled, None))
    assert "polled" not in json.loads(wire)
    assert Snapshot.from_wire(wire).inputs == (polled, None)
    assert Snapshot.from_wire(plain.to_wire()).inputs is None
