"""The simulated ``/authorize``: consent page, redirect URI rules, Agree and Cancel."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from nowplaying.simulator import Simulator

if TYPE_CHECKING:
    from harness.conftest_sim import SimEnv

pytest_plugins = ["harness.conftest_sim"]
pytestmark = pytest.mark.anyio


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
