"""Access tokens refreshed before they expire: one refresh under a race, rotation kept, refusals loud."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from mailer_core.kommo import client as kommo
from mailer_core.kommo import tokens as kommo_tokens
from mailer_core.kommo.accounts import client_for_account
from mailer_core.kommo.errors import KommoDisconnected, KommoMisconfigured, KommoRateLimited, is_retryable
from mailer_core.store.models import AccountModel

from devstack.kommo_standin import seed
from devstack.kommo_standin.server import KommoStandIn
from devstack.resources import StackResources
from tests.support.constants import TEST_REDIRECT_URI, TEST_SECRET
from tests.support.fixtures.kommo_oauth import install_through_oauth
from tests.support.kommo_accounts import CLIENT_ID, stored_tokens
from tests.support.kommo_helpers import WRONG_CLIENT_ANSWER
from tests.support.sim_clock import SimClock

NEAR_EXPIRY = 23.5 * 3600  # the access token lives 24 h; refreshed within the last hour


def account() -> AccountModel:
    return AccountModel.get(seed.ACCOUNT_ID, consistent_read=True)


def refreshes(standin: KommoStandIn) -> list[Any]:
    return [c for c in standin.token_calls if c.grant_type == "refresh_token"]


@pytest.mark.usefixtures("installed")
def test_a_token_far_from_expiry_is_used_as_it_is(standin: KommoStandIn, clock: SimClock) -> None:
    clock.advance(22 * 3600)
    client = client_for_account(account(), clock=clock)
    assert client.account()["id"] == seed.ACCOUNT_ID
    assert refreshes(standin) == []


@pytest.mark.usefixtures("installed")
def test_eight_callers_at_expiry_make_exactly_one_refresh_and_all_use_the_new_token(
    standin: KommoStandIn, clock: SimClock
) -> None:
    # GIVEN the access token expires within the hour
    clock.advance(NEAR_EXPIRY)
    old_access, old_refresh = stored_tokens()
    seen = len(standin.requests)

    # WHEN eight workers (as eight Lambdas would) each make a client and call Kommo at once
    def work(n: int) -> tuple[str, int]:
        client = client_for_account(account(), clock=clock)
        return client.tokens.current(), client.account()["id"]

    results = clock.run_threads(8, work)

    # THEN exactly one refresh reached Kommo, with the refresh token that was stored
    [refresh] = refreshes(standin)
    assert (refresh.status, refresh.refresh_token) == (200, old_refresh)
    # AND the stored refresh token is the newest one Kommo issued; the old one is retired
    access, stored_refresh = stored_tokens()
    assert stored_refresh == standin.refresh_token != old_refresh
    assert access != old_access
    # AND every caller ended with the new access token, and every API call used it and worked
    assert results == [(access, seed.ACCOUNT_ID)] * 8
    api_calls = [r for r in standin.requests[seen:] if r.path == "/api/v4/account"]
    assert [r.status for r in api_calls] == [200] * 8
    stored = account()
    assert (stored.token_version, stored.refresh_lease_owner, stored.refresh_lease_until) == (2, None, None)


def _use_refresh_token_elsewhere(standin: KommoStandIn, refresh_token: str) -> None:
    """Someone else (a copy of the integration) refreshes with our token: Kommo retires it."""
    body = {
        "client_id": CLIENT_ID,
        "client_secret": TEST_SECRET,
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "redirect_uri": TEST_REDIRECT_URI,
    }
    request = urllib.request.Request(
        standin.base_url + "/oauth2/access_token",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status == 200


@pytest.mark.usefixtures("installed")
def test_a_refused_refresh_disconnects_the_account_loudly_and_stops_calling(
    standin: KommoStandIn, clock: SimClock, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN our refresh token was used elsewhere, so Kommo no longer accepts it
    _use_refresh_token_elsewhere(standin, stored_tokens()[1])
    clock.advance(NEAR_EXPIRY)
    # WHEN a caller needs the token refreshed
    with pytest.raises(KommoDisconnected):
        client_for_account(account(), clock=clock)
    # THEN Kommo answered 401 "Token has been revoked", and the account is disconnected, with the reason
    assert [c.status for c in refreshes(standin)] == [200, 401]
    stored = account()
    assert stored.status == "disconnected" and "revoked" in str(stored.status_detail)
    assert stored.refresh_lease_until is None
    [error] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "disconnected" in error.getMessage() and error.__dict__["account_id"] == seed.ACCOUNT_ID
    # AND later callers are refused without reaching Kommo
    seen = len(standin.requests)
    with pytest.raises(KommoDisconnected):
        client_for_account(account(), clock=clock)
    assert len(standin.requests) == seen


@pytest.mark.usefixtures("installed")
def test_a_429_at_the_token_endpoint_is_asked_once_and_disconnects_nothing(
    standin: KommoStandIn, clock: SimClock
) -> None:
    # GIVEN the access token is due for a refresh, and Kommo's token endpoint answers 429 (300 s)
    kept = stored_tokens()
    clock.advance(NEAR_EXPIRY)
    standin.fail_next(
        429,
        body={"title": "Too Many Requests", "status": 429, "retry_after": 300},
        path="/oauth2/access_token",
    )
    seen = len(standin.requests)
    # WHEN a caller needs Kommo: the refresh is refused, and its call waits Kommo's 300 s
    client = client_for_account(account(), clock=clock)
    with pytest.raises(KommoRateLimited) as caught:
        client.account()
    assert is_retryable(caught.value) and caught.value.retry_after == pytest.approx(300)
    # THEN Kommo was asked once, and nothing more during its wait
    assert [r.status for r in standin.requests[seen:]] == [429]
    # AND the account keeps its tokens and stays connected
    assert stored_tokens() == kept and account().status == "active"
    # WHEN the wait is over, the kept refresh token refreshes, and the call goes through
    clock.advance(300)
    assert client_for_account(account(), clock=clock).account()["id"] == seed.ACCOUNT_ID
    token_calls = [r.status for r in standin.requests[seen:] if r.path == "/oauth2/access_token"]
    assert token_calls == [429, 200]
    assert stored_tokens()[1] == standin.refresh_token != kept[1]


@pytest.mark.usefixtures("installed")
def test_kommo_refusing_our_client_id_or_secret_disconnects_no_account_and_keeps_its_refresh_token(
    standin: KommoStandIn, clock: SimClock, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN the access token is due for a refresh, and Kommo refuses our client (a bad deploy)
    kept = stored_tokens()
    clock.advance(NEAR_EXPIRY)
    standin.fail_next(401, body=WRONG_CLIENT_ANSWER, path="/oauth2/access_token", count=2)
    # WHEN a caller needs Kommo: it goes on with the access token it has (valid for 30 minutes)
    assert client_for_account(account(), clock=clock).account()["id"] == seed.ACCOUNT_ID
    # THEN the account stays connected with both its tokens, and an operator is told, loudly
    assert account().status == "active" and stored_tokens() == kept
    [error] = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "KOMMO_CLIENT_SECRET" in error and "no account is disconnected" in error
    # WHEN the access token has expired too: a retryable error, and still nothing is disconnected
    clock.advance(3600)
    with pytest.raises(KommoMisconfigured) as caught:
        client_for_account(account(), clock=clock)
    assert is_retryable(caught.value)
    assert account().status == "active" and stored_tokens() == kept
    # WHEN Kommo accepts our client again (the settings are fixed), the kept refresh token works
    assert client_for_account(account(), clock=clock).account()["id"] == seed.ACCOUNT_ID
    assert stored_tokens()[1] == standin.refresh_token != kept[1]


@pytest.mark.usefixtures("installed")
def test_a_401_refreshes_once_and_the_call_goes_through(standin: KommoStandIn, clock: SimClock) -> None:
    client = client_for_account(account(), clock=clock)
    # GIVEN Kommo revoked the access token long before its expiry
    standin.oauth.access_tokens.clear()
    # WHEN the client calls
    assert client.account()["id"] == seed.ACCOUNT_ID
    # THEN: 401, one refresh, the call again with the new token
    assert [(r.path, r.status) for r in standin.requests][-3:] == [
        ("/api/v4/account", 401),
        ("/oauth2/access_token", 200),
        ("/api/v4/account", 200),
    ]
    assert stored_tokens()[1] == standin.refresh_token


@pytest.mark.usefixtures("installed")
def test_a_live_lease_of_another_worker_is_waited_for_and_an_expired_one_taken_over(
    standin: KommoStandIn, clock: SimClock
) -> None:
    clock.advance(NEAR_EXPIRY)
    now = clock.timestamp()
    # GIVEN a worker took the refresh lease and died
    AccountModel(seed.ACCOUNT_ID).update(
        actions=[
            AccountModel.refresh_lease_owner.set("a-dead-worker"),
            AccountModel.refresh_lease_until.set(now + kommo_tokens.LEASE_SECONDS),
        ]
    )
    old_access = stored_tokens()[0]
    # WHEN a caller comes while the lease lives: it waits, then uses the still-valid token
    client = client_for_account(account(), clock=clock)
    assert client.tokens.current() == old_access
    assert refreshes(standin) == []
    assert clock.timestamp() - now == pytest.approx(kommo_tokens.MAX_LEASE_WAIT_SECONDS, abs=0.5)
    # WHEN a caller comes after the lease ran out: it takes the lease over and refreshes
    clock.advance(kommo_tokens.LEASE_SECONDS)
    client = client_for_account(account(), clock=clock)
    assert client.tokens.current() == stored_tokens()[0] != old_access
    assert len(refreshes(standin)) == 1


@pytest.mark.usefixtures("installed")
def test_a_refresh_that_loses_to_a_reinstall_never_stores_over_it(
    standin: KommoStandIn, clock: SimClock, aws_stack: StackResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock.advance(NEAR_EXPIRY)
    original = kommo.request_token
    reinstalled: list[bool] = []

    def refresh_during_a_reinstall(*args: Any, **kwargs: Any) -> kommo.TokenGrant:
        grant = original(*args, **kwargs)
        if not reinstalled:
            reinstalled.append(True)
            install_through_oauth(standin, aws_stack, clock)  # the widget is installed again meanwhile
        return grant

    monkeypatch.setattr(kommo, "request_token", refresh_during_a_reinstall)
    client = client_for_account(account(), clock=clock)
    # THEN the reinstall's tokens stay, and the caller uses them
    access, refresh = stored_tokens()
    assert client.tokens.current() == access
    assert account().token_version == 2  # install 1, reinstall 2; the refresh's write was refused
    assert refresh == standin.oauth.newest_refresh_token()
    assert [c.grant_type for c in standin.token_calls] == [
        "authorization_code",
        "refresh_token",
        "authorization_code",
    ]


def test_tokens_and_codes_never_reach_the_logs(
    standin: KommoStandIn, clock: SimClock, aws_stack: StackResources, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    install_through_oauth(standin, aws_stack, clock)
    first = stored_tokens()
    clock.advance(NEAR_EXPIRY)
    client_for_account(account(), clock=clock).account()
    secrets_seen = [*first, *stored_tokens()]
    logged = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    assert "Kommo access token refreshed" in logged
    assert not [s for s in secrets_seen if s in logged]
