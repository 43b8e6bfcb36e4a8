"""The simulated accounts routes: ``/authorize`` (consent page, redirect URI rules, Agree and
Cancel) and ``POST /api/token`` (every error row of the contract, PKCE, refresh modes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from nowplaying.simulator import Simulator

if TYPE_CHECKING:
    from harness.simulated import SimEnv

from typing import TYPE_CHECKING

import httpx

from nowplaying.clock import FakeClock

if TYPE_CHECKING:
    from harness.simulated import SimEnv

pytestmark = pytest.mark.anyio

DAY = 86400


def error(error: str, description: str) -> dict[str, str]:
    """A token error body."""
    return {"error": error, "error_description": description}


async def test_code_exchange_returns_tokens_shaped_like_spotify(sim_env: SimEnv) -> None:
    """200 with the recorded response's keys, Bearer, 3600 s and the granted scopes."""
    response = await sim_env.exchange(await sim_env.code())
    assert response.status_code == 200
    body = response.json()
    assert set(body) == set(sim_env.recorded("token-authorization-code.json"))
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == sim_env.scopes
    assert body["access_token"] != body["refresh_token"]


async def test_json_body_is_unsupported(sim_env: SimEnv) -> None:
    """Only form encoding is understood: JSON looks like a missing grant_type."""
    body = {"grant_type": "authorization_code", "code": await sim_env.code()}
    response = await sim_env.http.post(
        "/api/token", json=body, auth=(sim_env.client_id, sim_env.client_secret)
    )
    assert response.status_code == 400
    assert response.json() == error("unsupported_grant_type", "grant_type parameter is missing")


async def test_missing_grant_type_is_unsupported(sim_env: SimEnv) -> None:
    """A form without grant_type gets unsupported_grant_type."""
    response = await sim_env.http.post(
        "/api/token", data={"code": "x"}, auth=(sim_env.client_id, sim_env.client_secret)
    )
    assert response.json() == error("unsupported_grant_type", "grant_type parameter is missing")


async def test_unknown_client_is_invalid_client(sim_env: SimEnv) -> None:
    """Basic auth with an unknown client id."""
    response = await sim_env.exchange(await sim_env.code(), auth=("nobody", "x"))
    assert response.status_code == 400
    assert response.json() == sim_env.recorded("token-error-invalid-client.json")


async def test_wrong_secret_is_invalid_client_secret(sim_env: SimEnv) -> None:
    """Basic auth with the wrong secret."""
    response = await sim_env.exchange(await sim_env.code(), auth=(sim_env.client_id, "wrong"))
    assert response.json() == error("invalid_client", "Invalid client secret")


async def test_unknown_public_client_is_invalid_client(sim_env: SimEnv) -> None:
    """No Basic header and an unknown client_id in the body."""
    verifier, challenge = sim_env.pkce_pair()
    code = await sim_env.code(code_challenge_method="S256", code_challenge=challenge)
    response = await sim_env.exchange(code, auth=None, client_id="nobody", code_verifier=verifier)
    assert response.json() == error("invalid_client", "Invalid client")


async def test_unknown_code_is_invalid(sim_env: SimEnv) -> None:
    """A code the server never issued."""
    response = await sim_env.exchange("made-up")
    assert response.json() == error("invalid_grant", "Invalid authorization code")


async def test_reused_code_is_invalid_with_nothing_else_required(sim_env: SimEnv) -> None:
    """A second use fails on the code itself, whatever else the request lacks."""
    code = await sim_env.code()
    assert (await sim_env.exchange(code)).status_code == 200
    response = await sim_env.http.post(
        "/api/token",
        data={"grant_type": "authorization_code", "code": code},
        auth=(sim_env.client_id, sim_env.client_secret),
    )
    assert response.json() == error("invalid_grant", "Invalid authorization code")


async def test_reusing_a_code_leaves_earlier_tokens_working(sim_env: SimEnv) -> None:
    """The refused reuse does not revoke what the first exchange returned."""
    code = await sim_env.code()
    tokens = (await sim_env.exchange(code)).json()
    await sim_env.exchange(code)
    assert (await sim_env.api("/me", tokens["access_token"])).status_code == 200


async def test_code_expires_after_ten_minutes(sim_env: SimEnv) -> None:
    """Codes are short-lived."""
    code = await sim_env.code()
    await sim_env.clock.advance(601)
    response = await sim_env.exchange(code)
    assert response.json() == error("invalid_grant", "Invalid authorization code")


async def test_code_is_bound_to_its_client(sim_env: SimEnv) -> None:
    """Another app cannot redeem the code."""
    sim_env.sim.add_client("other", "osecret", [sim_env.redirect])
    response = await sim_env.exchange(await sim_env.code(), auth=("other", "osecret"))
    assert response.json() == error("invalid_grant", "Invalid authorization code")


async def test_redirect_uri_must_match_the_authorize_one(sim_env: SimEnv) -> None:
    """The exchange's redirect_uri must equal the one sent to /authorize."""
    code = await sim_env.code(redirect_uri="http://127.0.0.1:9000/callback")
    response = await sim_env.exchange(code)
    assert response.json() == error("invalid_grant", "Invalid redirect URI")


async def test_pkce_public_client_with_right_verifier(sim_env: SimEnv) -> None:
    """client_id + code_verifier, no secret: tokens."""
    verifier, challenge = sim_env.pkce_pair()
    code = await sim_env.code(code_challenge_method="S256", code_challenge=challenge)
    response = await sim_env.exchange(
        code, auth=None, client_id=sim_env.client_id, code_verifier=verifier
    )
    assert response.status_code == 200
    assert "refresh_token" in response.json()


async def test_pkce_wrong_verifier_is_incorrect(sim_env: SimEnv) -> None:
    """A verifier that does not hash to the challenge."""
    _, challenge = sim_env.pkce_pair()
    code = await sim_env.code(code_challenge_method="S256", code_challenge=challenge)
    other, _ = sim_env.pkce_pair()
    response = await sim_env.exchange(
        code, auth=None, client_id=sim_env.client_id, code_verifier=other
    )
    assert response.json() == error("invalid_grant", "code_verifier was incorrect")


async def test_pkce_public_client_without_verifier_is_refused(sim_env: SimEnv) -> None:
    """A public client must send code_verifier."""
    _, challenge = sim_env.pkce_pair()
    code = await sim_env.code(code_challenge_method="S256", code_challenge=challenge)
    response = await sim_env.exchange(code, auth=None, client_id=sim_env.client_id)
    assert response.json() == error("invalid_request", "code_verifier required")


async def test_public_client_without_challenge_or_verifier_is_refused(sim_env: SimEnv) -> None:
    """Without a secret there must be PKCE."""
    response = await sim_env.exchange(await sim_env.code(), auth=None, client_id=sim_env.client_id)
    assert response.json() == error("invalid_request", "code_verifier required")


async def test_confidential_client_must_send_verifier_when_challenge_was_used(
    sim_env: SimEnv,
) -> None:
    """A code issued with a challenge needs the verifier even with the secret."""
    _, challenge = sim_env.pkce_pair()
    code = await sim_env.code(code_challenge_method="S256", code_challenge=challenge)
    response = await sim_env.exchange(code)
    assert response.json() == error("invalid_request", "code_verifier required")


async def test_confidential_client_with_pkce_and_secret(sim_env: SimEnv) -> None:
    """Secret and verifier together work."""
    verifier, challenge = sim_env.pkce_pair()
    code = await sim_env.code(code_challenge_method="S256", code_challenge=challenge)
    assert (await sim_env.exchange(code, code_verifier=verifier)).status_code == 200


async def test_refresh_in_omit_mode_returns_no_refresh_token(sim_env: SimEnv) -> None:
    """2026 behaviour: the refresh response has no refresh_token; the old one keeps working."""
    tokens = await sim_env.login()
    first = await sim_env.refresh(tokens["refresh_token"])
    assert first.status_code == 200
    assert "refresh_token" not in first.json()
    assert set(first.json()) == set(sim_env.recorded("token-refresh-no-rotation.json"))
    assert (await sim_env.refresh(tokens["refresh_token"])).status_code == 200


async def test_refreshed_access_token_works(sim_env: SimEnv) -> None:
    """The new access token is accepted by the Web API."""
    tokens = await sim_env.login()
    fresh = (await sim_env.refresh(tokens["refresh_token"])).json()["access_token"]
    assert (await sim_env.api("/me", fresh)).status_code == 200


async def test_refresh_in_rotate_mode_revokes_the_old_token(sim_env: SimEnv) -> None:
    """Rotation: a new refresh token each time; the old one then fails as revoked."""
    sim_env.sim.set_refresh_mode("rotate")
    tokens = await sim_env.login()
    rotated = (await sim_env.refresh(tokens["refresh_token"])).json()
    assert set(rotated) == set(sim_env.recorded("token-refresh-rotated.json"))
    assert rotated["refresh_token"] != tokens["refresh_token"]
    again = await sim_env.refresh(tokens["refresh_token"])
    assert again.json() == sim_env.recorded("token-error-revoked.json")
    assert (await sim_env.refresh(rotated["refresh_token"])).status_code == 200


async def test_unknown_refresh_token_is_invalid(sim_env: SimEnv) -> None:
    """A refresh token the server never issued."""
    response = await sim_env.refresh("made-up")
    assert response.json() == error("invalid_grant", "Invalid refresh token")


async def test_refresh_token_of_another_app_is_invalid(sim_env: SimEnv) -> None:
    """Refresh tokens are bound to their app."""
    sim_env.sim.add_client("other", "osecret", [sim_env.redirect])
    tokens = await sim_env.login()
    response = await sim_env.refresh(tokens["refresh_token"], auth=("other", "osecret"))
    assert response.json() == error("invalid_grant", "Invalid refresh token")


async def test_refresh_token_expires_after_its_lifetime(sim_env: SimEnv) -> None:
    """Six months after consent: Refresh token expired."""
    tokens = await sim_env.login()
    await sim_env.clock.advance(182 * DAY)
    response = await sim_env.refresh(tokens["refresh_token"])
    assert response.json() == error("invalid_grant", "Refresh token expired")


async def test_refreshing_does_not_extend_the_lifetime(sim_env: SimEnv) -> None:
    """A refresh the day before expiry does not move the deadline."""
    tokens = await sim_env.login()
    await sim_env.clock.advance(181 * DAY)
    assert (await sim_env.refresh(tokens["refresh_token"])).status_code == 200
    await sim_env.clock.advance(2 * DAY)
    response = await sim_env.refresh(tokens["refresh_token"])
    assert response.json() == error("invalid_grant", "Refresh token expired")


async def test_custom_refresh_lifetime(sim_clock: FakeClock) -> None:
    """``refresh_token_lifetime`` sets the deadline."""
    sim = Simulator(clock=sim_clock, refresh_token_lifetime=60)
    grant = sim.grant("demo")
    await sim_clock.advance(61)
    transport = httpx.ASGITransport(app=sim.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim.test") as http:
        response = await http.post(
            "/api/token",
            data={"grant_type": "refresh_token", "refresh_token": grant.refresh_token or ""},
            auth=("cid", "csecret"),
        )
    assert response.json() == error("invalid_grant", "Refresh token expired")


async def test_revoke_fails_refresh_as_revoked(sim_env: SimEnv) -> None:
    """The user removed the app: refresh gets Refresh token revoked."""
    tokens = await sim_env.login()
    sim_env.sim.revoke("demo")
    response = await sim_env.refresh(tokens["refresh_token"])
    assert response.json() == error("invalid_grant", "Refresh token revoked")


async def test_revoke_makes_access_tokens_401(sim_env: SimEnv) -> None:
    """The user removed the app: the Web API answers 401."""
    tokens = await sim_env.login()
    sim_env.sim.revoke("demo")
    assert (await sim_env.api("/me", tokens["access_token"])).status_code == 401


async def test_consent_after_revoke_works_again(sim_env: SimEnv) -> None:
    """A new consent after removal gives working tokens."""
    await sim_env.login()
    sim_env.sim.revoke("demo")
    tokens = await sim_env.login()
    assert (await sim_env.refresh(tokens["refresh_token"])).status_code == 200


async def test_public_refresh_of_a_pkce_grant(sim_env: SimEnv) -> None:
    """A PKCE public client refreshes with client_id only."""
    verifier, challenge = sim_env.pkce_pair()
    code = await sim_env.code(code_challenge_method="S256", code_challenge=challenge)
    tokens = (
        await sim_env.exchange(code, auth=None, client_id=sim_env.client_id, code_verifier=verifier)
    ).json()
    response = await sim_env.refresh(
        tokens["refresh_token"], auth=None, client_id=sim_env.client_id
    )
    assert response.status_code == 200


async def test_public_refresh_of_a_confidential_grant_is_refused(sim_env: SimEnv) -> None:
    """Tokens from a secret-authenticated exchange need the secret to refresh."""
    tokens = await sim_env.login()
    response = await sim_env.refresh(
        tokens["refresh_token"], auth=None, client_id=sim_env.client_id
    )
    assert response.json() == error("invalid_client", "Invalid client secret")


async def test_access_token_expires_after_an_hour(sim_env: SimEnv) -> None:
    """expires_in 3600 is honoured by the Web API."""
    tokens = await sim_env.login()
    await sim_env.clock.advance(3600)
    response = await sim_env.api("/me", tokens["access_token"])
    assert response.status_code == 401


async def test_expire_access_tokens_then_refresh(sim_env: SimEnv) -> None:
    """Forced expiry gives 401; a refresh gives a working token."""
    tokens = await sim_env.login()
    sim_env.sim.expire_access_tokens("demo")
    assert (await sim_env.api("/me", tokens["access_token"])).status_code == 401
    fresh = (await sim_env.refresh(tokens["refresh_token"])).json()["access_token"]
    assert (await sim_env.api("/me", fresh)).status_code == 200


async def test_expire_access_tokens_of_one_user_only(sim_env: SimEnv) -> None:
    """Other users' tokens keep working."""
    sim_env.sim.add_user("alice", "Alice")
    alice = sim_env.sim.grant("alice")
    sim_env.sim.expire_access_tokens("demo")
    assert (await sim_env.api("/me", alice.access_token)).status_code == 200


async def test_token_calls_are_counted_by_grant_type(sim_env: SimEnv) -> None:
    """token, token:authorization_code and token:refresh_token counters."""
    tokens = await sim_env.login()
    await sim_env.refresh(tokens["refresh_token"])
    calls = sim_env.sim.calls
    assert (calls["token"], calls["token:authorization_code"], calls["token:refresh_token"]) == (
        2,
        1,
        1,
    )


async def test_consent_page_shows_app_scopes_and_buttons(sim_env: SimEnv) -> None:
    """The page names the app, the scopes in words, and posts Agree/Cancel back."""
    response = await sim_env.http.get("/authorize", params=sim_env.auth_params())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "<h1>Now Playing</h1>" in page
    assert "Read your currently playing content" in page
    assert "Access your recently played items" in page
    assert '<form method="post" action="/authorize">' in page
    assert (
        '<button class="agree" type="submit" name="decision" value="agree">Agree</button>' in page
    )
    assert 'name="decision" value="cancel">Cancel</button>' in page


async def test_consent_page_carries_parameters_in_hidden_fields(sim_env: SimEnv) -> None:
    """Every authorize parameter travels back in a hidden field."""
    _, challenge = sim_env.pkce_pair()
    params = sim_env.auth_params(
        code_challenge_method="S256", code_challenge=challenge, show_dialog="true"
    )
    page = (await sim_env.http.get("/authorize", params=params)).text
    for name, value in params.items():
        assert f'<input type="hidden" name="{name}" value="{value}">' in page


async def test_consent_page_escapes_everything(sim_env: SimEnv) -> None:
    """Markup in the state, app name and user names is escaped, never rendered."""
    sim_env.sim.add_client("evil", "s", [sim_env.redirect], name="<script>alert(1)</script>")
    sim_env.sim.add_user("mallory", '"><img src=x onerror=alert(1)>')
    state = '"><script>alert("state")</script>'
    params = sim_env.auth_params(client_id="evil", state=state)
    page = (await sim_env.http.get("/authorize", params=params)).text
    assert "<script>" not in page
    assert "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'value="&quot;&gt;&lt;script&gt;alert(&quot;state&quot;)&lt;/script&gt;"' in page


async def test_consent_page_offers_a_user_choice_when_there_are_several(sim_env: SimEnv) -> None:
    """With more than one user, a select picks who is logged in (demo by default)."""
    sim_env.sim.add_user("alice", "Alice")
    page = (await sim_env.http.get("/authorize", params=sim_env.auth_params())).text
    assert '<select id="user" name="user">' in page
    assert '<option value="demo" selected>Demo Listener (demo)</option>' in page
    assert '<option value="alice">Alice (alice)</option>' in page


async def test_single_user_is_a_hidden_field(sim_env: SimEnv) -> None:
    """With one user there is nothing to choose."""
    page = (await sim_env.http.get("/authorize", params=sim_env.auth_params())).text
    assert "<select" not in page
    assert '<input type="hidden" name="user" value="demo">' in page


async def test_unknown_client_gets_an_error_page(sim_env: SimEnv) -> None:
    """An unknown client_id is never redirected."""
    response = await sim_env.http.get("/authorize", params=sim_env.auth_params(client_id="nope"))
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "INVALID_CLIENT: Invalid client" in response.text


async def test_unregistered_redirect_uri_gets_an_error_page(sim_env: SimEnv) -> None:
    """A redirect URI that is not registered is refused on Spotify's own page."""
    params = sim_env.auth_params(redirect_uri="https://evil.example/callback")
    response = await sim_env.http.get("/authorize", params=params)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "INVALID_CLIENT: Invalid redirect URI" in response.text


async def test_missing_redirect_uri_gets_an_error_page(sim_env: SimEnv) -> None:
    """No redirect URI at all: nothing to redirect to."""
    response = await sim_env.http.get("/authorize", params=sim_env.auth_params(redirect_uri=None))
    assert response.status_code == 400
    assert "INVALID_CLIENT: Invalid redirect URI" in response.text


async def test_localhost_redirect_is_insecure_even_when_registered(sim_env: SimEnv) -> None:
    """``localhost`` is refused: loopback must be an IP literal."""
    uri = "http://localhost:8000/callback"
    sim_env.sim.add_client("old", "s", [uri])
    response = await sim_env.http.get(
        "/authorize", params=sim_env.auth_params(client_id="old", redirect_uri=uri)
    )
    assert response.status_code == 400
    assert "INVALID_CLIENT: Insecure redirect URI" in response.text


async def test_plain_http_non_loopback_redirect_is_insecure(sim_env: SimEnv) -> None:
    """Plain HTTP is only allowed for loopback IPs."""
    uri = "http://example.com/callback"
    sim_env.sim.add_client("http", "s", [uri])
    params = sim_env.auth_params(client_id="http", redirect_uri=uri)
    response = await sim_env.http.get("/authorize", params=params)
    assert "INVALID_CLIENT: Insecure redirect URI" in response.text


async def test_registered_loopback_uri_matches_any_port(sim_env: SimEnv) -> None:
    """``http://127.0.0.1:8000/callback`` registered also accepts another port."""
    params = sim_env.auth_params(redirect_uri="http://127.0.0.1:53682/callback")
    response = await sim_env.http.get("/authorize", params=params)
    assert response.status_code == 200


async def test_ipv6_loopback_uri_matches_any_port(sim_env: SimEnv) -> None:
    """The IPv6 loopback literal follows the same any-port rule."""
    sim_env.sim.add_client("v6", "s", ["http://[::1]:8000/cb"])
    params = sim_env.auth_params(client_id="v6", redirect_uri="http://[::1]:9/cb")
    assert (await sim_env.http.get("/authorize", params=params)).status_code == 200


async def test_loopback_uri_with_another_path_is_invalid(sim_env: SimEnv) -> None:
    """Any port, but the path must match exactly."""
    params = sim_env.auth_params(redirect_uri="http://127.0.0.1:8000/other")
    response = await sim_env.http.get("/authorize", params=params)
    assert "INVALID_CLIENT: Invalid redirect URI" in response.text


async def test_https_redirect_must_match_exactly(sim_env: SimEnv) -> None:
    """A non-loopback URI does not get the any-port allowance."""
    sim_env.sim.add_client("web", "s", ["https://np.example/callback"])
    params = sim_env.auth_params(client_id="web", redirect_uri="https://np.example:8443/callback")
    response = await sim_env.http.get("/authorize", params=params)
    assert "INVALID_CLIENT: Invalid redirect URI" in response.text


async def test_wrong_response_type_redirects_with_error(sim_env: SimEnv) -> None:
    """The implicit grant is gone: ``response_type=token`` is refused via the redirect."""
    params = sim_env.auth_params(response_type="token")
    response = await sim_env.http.get("/authorize", params=params)
    assert response.status_code == 302
    assert sim_env.query_of(response) == {"error": "unsupported_response_type", "state": "st4te"}


async def test_unknown_scope_redirects_with_invalid_scope(sim_env: SimEnv) -> None:
    """A scope Spotify does not know is refused via the redirect."""
    params = sim_env.auth_params(scope="user-read-mind")
    response = await sim_env.http.get("/authorize", params=params)
    assert sim_env.query_of(response)["error"] == "invalid_scope"


async def test_plain_pkce_method_is_refused(sim_env: SimEnv) -> None:
    """Only S256 code challenges are accepted."""
    params = sim_env.auth_params(code_challenge_method="plain", code_challenge="x" * 43)
    response = await sim_env.http.get("/authorize", params=params)
    assert sim_env.query_of(response)["error"] == "invalid_request"


async def test_agree_redirects_with_code_and_state(sim_env: SimEnv) -> None:
    """Agree → 303 to the redirect URI with a code and the same state."""
    response = await sim_env.consent()
    assert response.status_code == 303
    assert response.headers["location"].startswith(sim_env.redirect + "?")
    query = sim_env.query_of(response)
    assert query["state"] == "st4te"
    assert len(query["code"]) > 20


async def test_cancel_redirects_with_access_denied(sim_env: SimEnv) -> None:
    """Cancel → redirect with ``error=access_denied`` and the state."""
    response = await sim_env.consent(decision="cancel")
    assert response.status_code == 303
    assert sim_env.query_of(response) == {"error": "access_denied", "state": "st4te"}


async def test_redirect_keeps_an_existing_query(sim_env: SimEnv) -> None:
    """A registered redirect URI with a query gets the code appended to it."""
    uri = "https://np.example/callback?from=sim"
    sim_env.sim.add_client("q", "s", [uri])
    response = await sim_env.consent(client_id="q", redirect_uri=uri)
    assert sim_env.query_of(response)["from"] == "sim"
    assert "code" in sim_env.query_of(response)


async def test_consent_form_is_validated_again(sim_env: SimEnv) -> None:
    """A tampered hidden redirect_uri gets the error page, not a redirect."""
    response = await sim_env.consent(redirect_uri="https://evil.example/steal")
    assert response.status_code == 400
    assert "INVALID_CLIENT: Invalid redirect URI" in response.text


async def test_consent_for_unknown_user_is_refused(sim_env: SimEnv) -> None:
    """The user field must name a simulated user."""
    response = await sim_env.consent(user="ghost")
    assert response.status_code == 400


async def test_earlier_consent_skips_the_page(sim_env: SimEnv) -> None:
    """Like Spotify, a second authorize for the same scopes redirects at once."""
    await sim_env.consent()
    response = await sim_env.http.get("/authorize", params=sim_env.auth_params())
    assert response.status_code == 302
    assert "code" in sim_env.query_of(response)


async def test_show_dialog_forces_the_page_again(sim_env: SimEnv) -> None:
    """``show_dialog=true`` shows the consent page despite an earlier consent."""
    await sim_env.consent()
    response = await sim_env.http.get("/authorize", params=sim_env.auth_params(show_dialog="true"))
    assert response.status_code == 200
    assert "Agree" in response.text


async def test_authorize_and_consent_are_counted(sim_env: SimEnv) -> None:
    """GET and POST of /authorize have their own counters."""
    await sim_env.http.get("/authorize", params=sim_env.auth_params())
    await sim_env.consent()
    assert sim_env.sim.calls["authorize"] == 1
    assert sim_env.sim.calls["consent"] == 1


def test_client_id_constant_matches_default() -> None:
    """The helpers' client id is the simulator's default app."""
    assert Simulator().client_id == "cid"
