"""The Kommo client against the running stand-in: contacts, batching, retries, errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from mailer_core.adapters import kms
from mailer_core.base.clock import FakeClock
from mailer_core.base.config import reset_settings
from mailer_core.base.errors import Conflict, InvalidInput
from mailer_core.kommo.accounts import client_for_account
from mailer_core.kommo.client import Contact, KommoClient, request_token
from mailer_core.kommo.errors import (
    KommoAccessDenied,
    KommoError,
    KommoInvalidGrant,
    KommoMisconfigured,
    KommoNotFound,
    KommoRateLimited,
    is_retryable,
)
from mailer_core.store.models import AccountModel

from devstack.kommo_standin import seed
from devstack.kommo_standin.seed import Seed
from devstack.kommo_standin.server import KommoStandIn
from tests.support.kommo_helpers import TOKEN, WRONG_CLIENT_ANSWER, refused_grant


@contextmanager
def _running(sample: Seed, clock: FakeClock) -> Iterator[tuple[KommoStandIn, KommoClient]]:
    """A stand-in over a changed copy of the sample account, and a client for it."""
    with KommoStandIn(sample, clock=clock) as standin:
        standin.add_token(seed.ACCOUNT_ID, TOKEN)
        yield standin, KommoClient(seed.SUBDOMAIN, TOKEN, base_url=standin.base_url, clock=clock)


def test_a_leads_contacts_come_main_first_with_their_emails_in_two_requests(
    sample: Seed, clock: FakeClock
) -> None:
    # GIVEN a lead whose main contact (Иван) is linked after the other one (Olga)
    lead = next(lead for lead in sample.leads if lead["id"] == seed.LEAD_OFFER)
    lead["_embedded"]["contacts"] = [
        {"id": seed.CONTACT_OLGA, "is_main": False},
        {"id": seed.CONTACT_IVAN, "is_main": True},
    ]
    with _running(sample, clock) as (standin, client):
        # WHEN the client resolves the lead's contacts
        contacts = client.entity_contacts("leads", seed.LEAD_OFFER)
        requests = standin.requests
    # THEN the main one comes first and every EMAIL value is there
    assert contacts == [
        Contact(seed.CONTACT_IVAN, "Иван Петров", ("ivan.petrov@example.com",), True),
        Contact(
            seed.CONTACT_OLGA, "Olga Smirnova", ("olga.smirnova@example.com", "olga.home@example.org"), False
        ),
    ]
    # AND it cost one read of the lead and one batched read of the contacts
    assert [(r.method, r.path, r.status) for r in requests] == [
        ("GET", f"/api/v4/leads/{seed.LEAD_OFFER}", 200),
        ("GET", "/api/v4/contacts", 200),
    ]
    assert "with=contacts" in requests[0].query
    assert f"filter%5Bid%5D%5B%5D={seed.CONTACT_OLGA}" in requests[1].query
    assert f"filter%5Bid%5D%5B%5D={seed.CONTACT_IVAN}" in requests[1].query


def test_a_contact_is_its_own_main_recipient(standin: KommoStandIn, client: KommoClient) -> None:
    assert client.entity_contacts("contacts", seed.CONTACT_JOHN) == [
        Contact(seed.CONTACT_JOHN, "John Smith", ("john.smith@example.com",), True)
    ]
    assert len(standin.requests) == 1


def test_a_contact_without_email_has_no_emails(client: KommoClient) -> None:
    [maria] = client.entity_contacts("leads", seed.LEAD_CONSULTING)
    assert (maria.name, maria.emails, maria.is_main) == ("Мария Иванова", (), True)


def test_a_companys_contacts_come_in_one_batch(standin: KommoStandIn, client: KommoClient) -> None:
    contacts = client.entity_contacts("companies", seed.COMPANY_ROMASHKA)
    assert [(c.id, c.is_main) for c in contacts] == [(seed.CONTACT_IVAN, False), (seed.CONTACT_OLGA, False)]
    assert [r.path for r in standin.requests] == [
        f"/api/v4/companies/{seed.COMPANY_ROMASHKA}",
        "/api/v4/contacts",
    ]


def test_a_lead_without_contacts_costs_one_request(sample: Seed, clock: FakeClock) -> None:
    sample.leads[1]["_embedded"]["contacts"] = []
    with _running(sample, clock) as (standin, client):
        assert client.entity_contacts("leads", sample.leads[1]["id"]) == []
        assert len(standin.requests) == 1


def test_more_than_250_contacts_are_read_in_batches_of_250(sample: Seed, clock: FakeClock) -> None:
    # GIVEN a lead with 300 contacts
    template = sample.contacts[0]
    sample.contacts = [
        {**template, "id": 25100000 + n, "name": f"Contact {n}", "_embedded": {"tags": [], "companies": []}}
        for n in range(300)
    ]
    sample.leads[0]["_embedded"]["contacts"] = [{"id": 25100000 + n, "is_main": n == 299} for n in range(300)]
    with _running(sample, clock) as (standin, client):
        # WHEN the client resolves them
        contacts = client.entity_contacts("leads", sample.leads[0]["id"])
        requests = standin.requests
    # THEN all 300 come back, the main one first, in 1 + 2 requests
    assert len(contacts) == 300
    assert contacts[0].id == 25100299 and contacts[0].is_main
    assert [r.path for r in requests] == [
        f"/api/v4/leads/{seed.LEAD_OFFER}",
        "/api/v4/contacts",
        "/api/v4/contacts",
    ]
    assert all(r.query.count("filter%5Bid%5D") <= 250 for r in requests)


def test_kommos_own_429_stops_the_client_at_once_with_kommos_wait(
    standin: KommoStandIn, client: KommoClient, sleeps: list[float]
) -> None:
    # GIVEN a frozen clock, so that every request falls into the same second
    answers = []
    # WHEN the client makes ten calls
    with pytest.raises(KommoRateLimited) as caught:
        for _ in range(10):
            answers.append(client.get("/api/v4/account"))
    # THEN seven went through, Kommo refused the 8th with its wait, and the client stopped there
    assert len(answers) == 7 and caught.value.retry_after == 300
    assert [r.status for r in standin.requests] == [200] * 7 + [429]
    assert sleeps == []


def test_a_short_retry_after_header_is_slept_and_the_call_repeated(
    standin: KommoStandIn, clock: FakeClock, sleeps: list[float]
) -> None:
    client = KommoClient(seed.SUBDOMAIN, TOKEN, base_url=standin.base_url, clock=clock, max_retry_wait=8.0)
    standin.fail_next(429, body={"title": "Too Many Requests", "status": 429}, headers={"Retry-After": "3"})
    assert client.get("/api/v4/account") is not None
    assert sleeps == [3.0]
    assert [r.status for r in standin.requests] == [429, 200]


@pytest.mark.parametrize(
    ("body", "headers", "wait"),
    [
        ({"title": "Too Many Requests", "status": 429, "retry_after": 300}, {}, 300.0),
        ({"title": "Too Many Requests", "status": 429}, {"Retry-After": "120"}, 120.0),
    ],
    ids=["retry_after in the body", "Retry-After header"],
)
def test_a_429_asking_for_minutes_stops_the_call_at_once_with_kommos_wait(
    standin: KommoStandIn,
    client: KommoClient,
    sleeps: list[float],
    body: dict[str, object],
    headers: dict[str, str],
    wait: float,
) -> None:
    # GIVEN Kommo answers 429 and asks for a wait far longer than a caller may sleep
    standin.fail_next(429, body=body, headers=headers)
    # WHEN the client calls
    with pytest.raises(KommoRateLimited) as caught:
        client.get("/api/v4/account")
    # THEN it asked once, slept nothing and did not ask again (429s repeated get the IP banned)
    assert [r.status for r in standin.requests] == [429]
    assert sleeps == []
    # AND the error carries Kommo's wait, for the queue to redeliver the job that late
    assert (caught.value.kommo_status, caught.value.retry_after) == (429, wait)
    assert is_retryable(caught.value)


def test_server_errors_are_retried_with_backoff(
    standin: KommoStandIn, client: KommoClient, sleeps: list[float]
) -> None:
    standin.fail_next(503, count=2)
    assert client.get(f"/api/v4/leads/{seed.LEAD_OFFER}") is not None
    assert sleeps == [0.5, 1.0]
    assert [r.status for r in standin.requests] == [503, 503, 200]


def test_server_errors_past_the_retries_raise_with_kommos_words(
    standin: KommoStandIn, clock: FakeClock, sleeps: list[float]
) -> None:
    client = KommoClient(seed.SUBDOMAIN, TOKEN, base_url=standin.base_url, clock=clock, max_retries=2)
    standin.fail_next(
        500, count=5, body={"title": "Internal Server Error", "status": 500, "detail": "db is down"}
    )
    with pytest.raises(KommoError) as caught:
        client.get("/api/v4/account")
    assert caught.value.kommo_status == 500
    assert caught.value.detail == "db is down"
    assert "db is down" in caught.value.message
    assert len(standin.requests) == 3
    assert sleeps == [0.5, 1.0]


def test_a_post_is_not_retried_on_a_server_error(standin: KommoStandIn, client: KommoClient) -> None:
    standin.fail_next(504)
    with pytest.raises(KommoError):
        client.post("/api/v4/tasks", [{"text": "x", "complete_till": 1795600000}])
    assert len(standin.requests) == 1


def test_a_bad_token_is_access_denied_at_once(
    standin: KommoStandIn, clock: FakeClock, sleeps: list[float]
) -> None:
    client = KommoClient(seed.SUBDOMAIN, "revoked", base_url=standin.base_url, clock=clock)
    with pytest.raises(KommoAccessDenied) as caught:
        client.entity_contacts("leads", seed.LEAD_OFFER)
    assert caught.value.kommo_status == 401
    assert len(standin.requests) == 1 and sleeps == []


def test_a_blocked_ip_403_is_access_denied(standin: KommoStandIn, client: KommoClient) -> None:
    standin.fail_next(403, body={"title": "Forbidden", "status": 403, "detail": "IP blocked"})
    with pytest.raises(KommoAccessDenied) as caught:
        client.get("/api/v4/account")
    assert caught.value.detail == "IP blocked"


def test_the_token_endpoints_refusals_are_told_apart_by_kommos_words(
    standin: KommoStandIn, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    answers = [
        (WRONG_CLIENT_ANSWER, KommoMisconfigured),  # our client id or secret is wrong
        (refused_grant("Check the `client_id` parameter", status=400), KommoMisconfigured),
        (refused_grant("Token is not linked to client"), KommoMisconfigured),  # another integration's
        (refused_grant("Token has been revoked"), KommoInvalidGrant),  # the refresh token is dead
        (refused_grant("Token has expired"), KommoInvalidGrant),
        (refused_grant("Authorization code has expired", status=400), KommoInvalidGrant),
    ]
    for body, kind in answers:
        standin.fail_next(int(str(body["status"])), body=body, path="/oauth2/access_token")
        with pytest.raises(KommoError) as caught:
            request_token(
                seed.SUBDOMAIN, {"grant_type": "refresh_token"}, base_url=standin.base_url, clock=clock
            )
        assert type(caught.value) is kind, body
        # only a dead grant is final (it disconnects an account); our configuration is retried
        assert is_retryable(caught.value) is (kind is KommoMisconfigured)
    # AND each refusal of our integration is logged as an error naming the settings to check
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 3 and all("KOMMO_CLIENT_SECRET" in e for e in errors)


def test_a_missing_lead_is_not_found(standin: KommoStandIn, client: KommoClient) -> None:
    with pytest.raises(KommoNotFound):
        client.entity_contacts("leads", 999)
    assert [(r.path, r.status) for r in standin.requests] == [("/api/v4/leads/999", 204)]


def test_a_validation_error_carries_kommos_list(standin: KommoStandIn, client: KommoClient) -> None:
    with pytest.raises(KommoError) as caught:
        client.patch(f"/api/v4/leads/{seed.LEAD_OFFER}", {"status_id": 1})
    assert caught.value.kommo_status == 400
    assert caught.value.validation_errors[0]["errors"][0]["path"] == "status_id"
    assert len(standin.requests) == 1


def test_patch_then_read_back(standin: KommoStandIn, client: KommoClient) -> None:
    client.patch(
        f"/api/v4/leads/{seed.LEAD_OFFER}",
        {"status_id": seed.STATUS_OFFER_SENT, "pipeline_id": seed.PIPELINE_ID},
    )
    assert client.get_entity("leads", seed.LEAD_OFFER)["status_id"] == seed.STATUS_OFFER_SENT
    assert [c.method for c in standin.changes] == ["PATCH"]


def test_custom_fields_are_read_across_pages(sample: Seed, clock: FakeClock) -> None:
    sample.custom_fields["leads"] = [
        seed.custom_field(600000 + n, "leads", f"F{n}", "text") for n in range(120)
    ]
    with _running(sample, clock) as (standin, client):
        fields = list(client.iter_pages("/api/v4/leads/custom_fields", "custom_fields", limit=50))
        assert len(standin.requests) == 3
    assert [f["id"] for f in fields] == [600000 + n for n in range(120)]


class _Redirecting(BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))
        self.send_response(302)
        self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def redirecting_server() -> Iterator[str]:
    _Redirecting.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_redirects_are_not_followed(redirecting_server: str) -> None:
    client = KommoClient(seed.SUBDOMAIN, TOKEN, base_url=redirecting_server, clock=FakeClock())
    with pytest.raises(KommoError) as caught:
        client.get("/api/v4/account")
    assert caught.value.kommo_status == 302
    assert _Redirecting.seen == [("/api/v4/account", f"Bearer {TOKEN}")]


def test_the_base_url_comes_from_the_settings_and_must_be_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILER_KOMMO_BASE_URL", raising=False)
    reset_settings()
    assert KommoClient("mailerdemo", TOKEN).base_url == "https://mailerdemo.kommo.com"
    for subdomain in ("evil.example.com/x", "a@b", ""):
        with pytest.raises(InvalidInput):
            KommoClient(subdomain, TOKEN)
    with pytest.raises(InvalidInput):
        KommoClient("mailerdemo", TOKEN, base_url="http://{subdomain}.kommo.com")
    with pytest.raises(ValueError):
        KommoClient("mailerdemo", TOKEN).get("https://elsewhere.example/api/v4/account")


@pytest.mark.usefixtures("aws_stack")
def test_client_for_account_decrypts_the_token_bound_to_the_account(
    standin: KommoStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILER_KOMMO_BASE_URL", standin.base_url)
    reset_settings()
    context = {"account_id": str(seed.ACCOUNT_ID), "purpose": "kommo_access_token"}
    account = AccountModel(
        account_id=seed.ACCOUNT_ID,
        subdomain=seed.SUBDOMAIN,
        kommo_token_ciphertext=kms.encrypt(TOKEN, context),
    )
    client = client_for_account(account)
    answer = client.get("/api/v4/account")
    assert answer is not None and answer["id"] == seed.ACCOUNT_ID

    with pytest.raises(Conflict):
        client_for_account(AccountModel(account_id=seed.ACCOUNT_ID, subdomain=seed.SUBDOMAIN))
    # a ciphertext copied onto another account does not decrypt there
    other = AccountModel(
        account_id=42, subdomain="other", kommo_token_ciphertext=account.kommo_token_ciphertext
    )
    with pytest.raises(Exception, match=r"(?i)invalid|ciphertext|context"):
        client_for_account(other)
