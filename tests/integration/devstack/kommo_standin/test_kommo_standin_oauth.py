"""The stand-in's token endpoint follows Kommo: single-use codes, rotating refresh tokens, 24 h tokens."""

from __future__ import annotations

import pytest
from mailer_core.base.clock import FakeClock

from devstack.kommo_standin import seed
from devstack.kommo_standin.server import KommoStandIn
from tests.support.kommo_helpers import MANAGER_TOKEN, TOKEN, WRONG_CLIENT_ANSWER, Answer, Api, refused_grant

CLIENT, SECRET, REDIRECT = "client-1", "secret-1", "https://mailer.example/hooks/kommo/install"


@pytest.fixture
def oauth(standin: KommoStandIn) -> KommoStandIn:
    standin.register_integration(CLIENT, SECRET, REDIRECT)
    return standin


def token(api: Api, grant_type: str, **values: str) -> Answer:
    body = {"client_id": CLIENT, "client_secret": SECRET, "redirect_uri": REDIRECT, "grant_type": grant_type}
    return api("POST", "/oauth2/access_token", {**body, **values}, token=None)


def test_a_code_gives_tokens_once(oauth: KommoStandIn, api: Api) -> None:
    code = oauth.issue_code(CLIENT)
    first = token(api, "authorization_code", code=code)
    assert first.status == 200
    assert set(first.body) == {"token_type", "expires_in", "server_time", "access_token", "refresh_token"}
    assert (first.body["token_type"], first.body["expires_in"]) == ("Bearer", 86400)
    again = token(api, "authorization_code", code=code)
    assert again.status == 400 and again.content_type.startswith("application/problem+json")
    assert again.body["hint"] == "Authorization code has been revoked"


def test_a_code_expires_after_20_minutes(oauth: KommoStandIn, api: Api, clock: FakeClock) -> None:
    code = oauth.issue_code(CLIENT)
    clock.advance(20 * 60 + 1)
    answer = token(api, "authorization_code", code=code)
    assert (answer.status, answer.body["hint"]) == (400, "Authorization code has expired")


def test_a_wrong_secret_or_redirect_is_refused(oauth: KommoStandIn, api: Api) -> None:
    code = oauth.issue_code(CLIENT)
    assert token(api, "authorization_code", code=code, client_secret="wrong").status == 401
    assert (
        token(api, "authorization_code", code=code, redirect_uri="https://elsewhere.example/").status == 400
    )


def test_a_wrong_client_id_or_secret_is_refused_in_kommos_own_words(oauth: KommoStandIn, api: Api) -> None:
    code = oauth.issue_code(CLIENT)
    for wrong in ({"client_secret": "wrong"}, {"client_id": "another-client"}):
        answer = token(api, "authorization_code", code=code, **wrong)
        # 401, "Некорректный клиент", with no hint and no invalid_client anywhere, as Kommo says it
        assert (answer.status, answer.content_type) == (401, "application/problem+json")
        assert answer.body == WRONG_CLIENT_ANSWER


def test_refresh_tokens_rotate_and_the_old_one_is_refused(oauth: KommoStandIn, api: Api) -> None:
    first = token(api, "authorization_code", code=oauth.issue_code(CLIENT)).body
    second = token(api, "refresh_token", refresh_token=first["refresh_token"])
    assert second.status == 200 and second.body["refresh_token"] != first["refresh_token"]
    stale = token(api, "refresh_token", refresh_token=first["refresh_token"])
    assert (stale.status, stale.body) == (401, refused_grant("Token has been revoked"))
    assert oauth.refresh_token == second.body["refresh_token"]
    assert [c.status for c in oauth.token_calls] == [200, 200, 401]


def test_issued_access_tokens_work_for_24_hours(oauth: KommoStandIn, api: Api, clock: FakeClock) -> None:
    access = token(api, "authorization_code", code=oauth.issue_code(CLIENT)).body["access_token"]
    answer = api("GET", "/api/v4/account", token=access)
    assert answer.status == 200 and answer.body["current_user_id"] == seed.ADMIN_USER_ID
    clock.advance(24 * 3600)
    assert api("GET", "/api/v4/account", token=access).status == 401


def test_the_tokens_of_one_integration_share_its_rate_window(oauth: KommoStandIn, api: Api) -> None:
    first = token(api, "authorization_code", code=oauth.issue_code(CLIENT)).body
    second = token(api, "refresh_token", refresh_token=first["refresh_token"]).body
    statuses = [
        api("GET", "/api/v4/account", token=t).status
        for t in [first["access_token"]] * 4 + [second["access_token"]] * 4
    ]
    assert statuses == [200] * 7 + [429]


def test_injected_failures_can_target_one_caller_or_the_token_endpoint(oauth: KommoStandIn, api: Api) -> None:
    oauth.fail_next(403, token=MANAGER_TOKEN)
    oauth.fail_next(503, path="/oauth2/access_token")
    assert api("GET", "/api/v4/account", token=TOKEN).status == 200
    assert oauth.pending_failures == 2  # neither taken yet: bench/faults.py waits for none left
    assert api("GET", "/api/v4/account", token=MANAGER_TOKEN).status == 403
    assert oauth.pending_failures == 1
    assert token(api, "authorization_code", code=oauth.issue_code(CLIENT)).status == 503
