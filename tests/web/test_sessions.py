"""Browser sessions: a cookie that is no live session is anonymous, whatever it holds."""

from __future__ import annotations

import pytest
from harness.app import ORIGIN
from harness.fuzz import (
    FUZZ,
    SESSION,
    Fuzz,
    assert_sane,
    describe,
    encode_headers,
    mangle,
    session_value,
)
from hypothesis import example, given
from hypothesis import strategies as st

pytestmark = pytest.mark.anyio


@FUZZ
@given(
    kind=st.sampled_from(["raw", "session", "both", "mangled"]),
    value=session_value,
    login=session_value,
    mutation=st.tuples(
        st.sampled_from(["truncate", "flip", "append", "prepend"]), st.integers(0, 500)
    ),
)
@example(kind="raw", value="=;=;;", login="", mutation=("flip", 0)).via("hand-picked")
@example(kind="session", value=".", login="", mutation=("flip", 0)).via("hand-picked")
@example(kind="session", value="abc.é", login="", mutation=("flip", 0)).via("non-ASCII signature")
@example(kind="both", value="", login="nonce.sig¡", mutation=("flip", 0)).via("non-ASCII login")
@example(kind="mangled", value="¡", login="", mutation=("append", 0)).via("found by Hypothesis")
async def test_cookies_never_500_and_never_authenticate(
    fuzz: Fuzz, kind: str, value: str, login: str, mutation: tuple[str, int]
) -> None:
    """Arbitrary Cookie headers and forged session cookies: anonymous everywhere, never a 500."""
    if kind == "mangled":
        value = mangle(fuzz.env.client.cookies.get(SESSION) or "", *mutation, junk=value)
    cookie = {
        "raw": value,
        "session": f"{SESSION}={value}",
        "both": f"{SESSION}={value}; __Host-np_login={login}",
        "mangled": f"{SESSION}={value}",
    }[kind]
    headers = encode_headers({"Cookie": cookie})
    anon = fuzz.anon
    anon.cookies.clear()
    for path in ("/api/spotify", "/api/account"):
        response = await anon.get(path, headers=headers)
        assert_sane(response, json_route=True)
        assert response.status_code == 401, describe(response)
        assert response.json() == {"error": "not_connected"}
    home = await anon.get("/", headers=headers)
    assert_sane(home, json_route=False)
    assert "Connect Spotify" in home.text and "Demo Listener" not in home.text
    publish = await anon.post(
        "/api/account/publish", headers={**headers, b"origin": ORIGIN.encode()}
    )
    assert_sane(publish, json_route=True)
    assert publish.status_code == 401
    logout = await anon.post("/logout", headers={**headers, b"origin": ORIGIN.encode()})
    assert_sane(logout, json_route=False)
    callback = await anon.get("/callback?state=x&code=y", headers=headers)
    assert callback.status_code == 400
    assert await fuzz.env.services.runtime.store.get_account("demo") is not None
