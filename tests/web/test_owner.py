"""The owner's JSON API: ``/api/account`` is the ``Account`` model serialized; whatever body
``/api/account/settings`` gets is a 4xx with a message or a change, never a 500."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from harness.app import ORIGIN, SAME, Env
from harness.fuzz import (
    FUZZ,
    Fuzz,
    assert_sane,
    describe,
    json_values,
)
from hypothesis import example, given
from hypothesis import strategies as st

from nowplaying import schema

pytestmark = pytest.mark.anyio


@FUZZ
@given(body=json_values | st.dictionaries(st.just("lastPlayed"), json_values, min_size=1))
@example(body={"lastPlayed": True, "extra": [1, {"x": None}]}).via("hand-picked")
@example(body={"lastPlayed": 0}).via("hand-picked")
async def test_settings_json_bodies(fuzz: Fuzz, body: Any) -> None:
    """Any JSON body: 200 exactly when it is an object whose lastPlayed is a boolean, else 400."""
    response = await fuzz.env.client.post(
        "/api/account/settings",
        content=json.dumps(body),
        headers={**SAME, "Content-Type": "application/json"},
    )
    assert_sane(response, json_route=True)
    valid = isinstance(body, dict) and isinstance(body.get("lastPlayed"), bool)
    assert response.status_code == (200 if valid else 400), describe(response)


@FUZZ
@given(body=st.binary(max_size=2000))
@example(body=b"\xff\xfe{").via("hand-picked")
@example(body=b"[" * 50_000).via("deeply nested JSON, under the 64 KiB limit")
@example(body=b'{"lastPlayed":' * 4_000).via("deeply nested object")
async def test_settings_raw_bodies(fuzz: Fuzz, body: bytes) -> None:
    """Any bytes as the settings body (invalid UTF-8, deep nesting): a 400, never a 500."""
    response = await fuzz.env.client.post(
        "/api/account/settings",
        content=body,
        headers={**SAME, "Content-Type": "application/json"},
    )
    assert_sane(response, json_route=True)
    assert response.status_code in (200, 400), describe(response)


async def test_api_account_is_the_account_model(connected: Env) -> None:
    """/api/account, before and after publishing, is exactly what the model serializes: the
    keys in order, the links, the reconnect date in whole seconds (UTC, ``Z``)."""
    before = (await connected.client.get("/api/account")).json()
    published = await connected.client.post("/api/account/publish", headers=SAME)
    after = published.json()
    for data in (before, after):
        model = schema.Account.model_validate(data)
        assert list(model.data().items()) == list(data.items())  # the keys in order, too
        assert "reconsentUrl" not in data and "spotifyRefusal" in data
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["reconnectBy"])
    assert before["links"] is None and before["published"] is False
    base = f"{ORIGIN}/p/{after['publicId']}"
    assert after["links"] == {
        "page": base,
        "json": f"{base}.json",
        "svg": f"{base}.svg",
        "events": f"{base}/events",
        "open": f"{base}/open",
        "recent": f"{base}/recent.svg",
    }
