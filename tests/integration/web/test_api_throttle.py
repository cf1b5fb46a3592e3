"""The widget's API per Kommo account: a token bucket of requests, 429 with Retry-After over it
(web.edge.throttle), one account's flood leaving the others alone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from mailer_core.base.config import reset_settings

from tests.integration.web.test_edge_routes import is_error_body
from tests.support.api_client import ApiClient
from tests.support.constants import TEST_AUDIENCE, TEST_SECRET

NOISY, QUIET = 31000001, 31000002
BURST = 3


@pytest.fixture
def tight_api(aws_stack: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An API that grants each account a burst of 3 and then one request every 100 s."""
    monkeypatch.setenv("MAILER_API_REQUESTS_PER_SECOND", "0.01")
    monkeypatch.setenv("MAILER_API_BURST", str(BURST))
    reset_settings()
    yield
    reset_settings()


def client(account_id: int) -> ApiClient:
    return ApiClient(secret=TEST_SECRET, audience=TEST_AUDIENCE, account_id=account_id)


@pytest.mark.usefixtures("tight_api")
def test_an_account_over_its_rate_gets_429_with_retry_after_and_the_others_do_not() -> None:
    noisy = client(NOISY)
    assert [noisy.get("/v1/me").status for _ in range(BURST)] == [200] * BURST

    refused = noisy.get("/v1/me")

    assert refused.status == 429
    body = json.loads(refused.body)
    assert is_error_body(body)
    assert body["error"] == "too_many_requests" and body["limit"] == "api_requests_per_second"
    assert isinstance(body["retry_after"], int) and 1 <= body["retry_after"] <= 100
    assert refused.headers["retry-after"] == str(body["retry_after"])
    assert refused.headers["content-type"] == "application/json"
    # another account is not slowed by the first one's flood
    assert client(QUIET).get("/v1/me").status == 200


@pytest.mark.usefixtures("tight_api")
def test_requests_without_a_valid_token_take_nothing_from_the_accounts_bucket() -> None:
    noisy = client(NOISY)
    for _ in range(5):
        assert noisy.get("/v1/me", auth=False).status == 401
        assert noisy.get("/v1/me", headers={"x-auth-token": "forged"}, auth=False).status == 401

    assert [noisy.get("/v1/me").status for _ in range(BURST)] == [200] * BURST
    assert noisy.get("/health", auth=False).status == 200  # public routes are not counted
