"""An installed account's limits: 7 requests per second shared by every caller, 429, 403 and 504."""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import pytest
from mailer_core.kommo.accounts import client_for_account
from mailer_core.kommo.client import KommoClient, NewTask
from mailer_core.kommo.errors import (
    KommoAccessDenied,
    KommoBusy,
    KommoError,
    KommoInsufficientRights,
    KommoRateLimited,
    is_retryable,
)
from mailer_core.kommo.limits import AccountGate
from mailer_core.store.models import AccountModel

from devstack.kommo_standin import seed
from devstack.kommo_standin.seed import Seed, demo_seed
from devstack.kommo_standin.server import KommoStandIn
from tests.support.kommo_accounts import point_at, save_account_with_token, serialize_moto
from tests.support.kommo_helpers import MANAGER_TOKEN, TOKEN
from tests.support.sim_clock import SimClock

pytestmark = pytest.mark.usefixtures("aws_stack")


@pytest.fixture
def sim() -> SimClock:
    return SimClock()


@pytest.fixture
def sample300() -> Seed:
    """The demo account with 300 more contacts."""
    sample = demo_seed()
    template = sample.contacts[0]
    sample.contacts += [
        {**template, "id": 25100000 + n, "name": f"Contact {n}", "_embedded": {"tags": [], "companies": []}}
        for n in range(300)
    ]
    return sample


@pytest.fixture
def kommo(sim: SimClock, sample300: Seed, monkeypatch: pytest.MonkeyPatch) -> Iterator[KommoStandIn]:
    serialize_moto(monkeypatch)
    with KommoStandIn(sample300, clock=sim) as running:
        running.add_token(seed.ACCOUNT_ID, TOKEN)
        point_at(running, monkeypatch)
        save_account_with_token(TOKEN)
        yield running


OTHER_ACCOUNT = seed.ACCOUNT_ID + 1


def client(sim: SimClock) -> KommoClient:
    """A client as a Lambda makes it: from the stored account, with its gate."""
    return client_for_account(AccountModel.get(seed.ACCOUNT_ID, consistent_read=True), clock=sim)


def busiest_second(times: list[float]) -> int:
    """The most requests within any one-second window (t - 1, t]."""
    return max(sum(1 for u in times if t - 1.0 < u <= t) for t in times)


def test_four_parallel_callers_never_exceed_seven_requests_per_second(
    kommo: KommoStandIn, sim: SimClock
) -> None:
    # WHEN four workers each make 20 requests to the same account at once
    def work(n: int) -> float:
        worker = client(sim)
        for _ in range(20):
            worker.get(f"/api/v4/leads/{seed.LEAD_OFFER}")
        return cast(AccountGate, worker.gate).waited

    waited = sim.run_threads(4, work)
    # THEN all 80 went through without a single 429
    requests = kommo.requests
    assert len(requests) == 80 and {r.status for r in requests} == {200}
    # AND Kommo never saw more than 7 in any second, paced evenly (80 requests ≈ 12.5 s)
    times = [r.time for r in requests]
    assert busiest_second(times) <= 7
    assert 79 / 7 <= times[-1] - times[0] <= 79 / (7 * 0.9) * 1.02
    assert all(w > 0 for w in waited)  # every worker waited its turn, through the clock


def test_a_429_is_waited_out_and_retried(kommo: KommoStandIn, sim: SimClock) -> None:
    worker = client(sim)
    kommo.fail_next(429, body={"title": "Too Many Requests", "status": 429, "retry_after": 2})
    started = sim.timestamp()
    assert worker.get(f"/api/v4/leads/{seed.LEAD_OFFER}") is not None
    assert [r.status for r in kommo.requests] == [429, 200]
    assert sim.timestamp() - started >= 2.0


def test_two_accounts_leaving_through_one_address_share_its_seven_requests_per_second(
    kommo: KommoStandIn, sim: SimClock
) -> None:
    # GIVEN a second account (Kommo counts per IP address, whatever the account)
    save_account_with_token(TOKEN, account_id=OTHER_ACCOUNT)

    # WHEN two workers of each account make 20 requests each, at once
    def work(n: int) -> None:
        account_id = (seed.ACCOUNT_ID, OTHER_ACCOUNT)[n % 2]
        worker = client_for_account(AccountModel.get(account_id, consistent_read=True), clock=sim)
        for _ in range(20):
            worker.get(f"/api/v4/leads/{seed.LEAD_OFFER}")

    sim.run_threads(4, work)
    # THEN all 80 went through without a 429, never more than 7 in any second from this address
    requests = kommo.requests
    assert len(requests) == 80 and {r.status for r in requests} == {200}
    assert busiest_second([r.time for r in requests]) <= 7


def test_a_429_pauses_every_account_leaving_through_the_same_address(
    kommo: KommoStandIn, sim: SimClock
) -> None:
    other = save_account_with_token(TOKEN, account_id=OTHER_ACCOUNT)
    kommo.fail_next(429, body={"title": "Too Many Requests", "status": 429, "retry_after": 300})
    with pytest.raises(KommoRateLimited):
        client(sim).get("/api/v4/account")
    # WHEN another account calls during Kommo's wait: nothing leaves this address
    with pytest.raises(KommoRateLimited) as caught:
        client_for_account(other, clock=sim).get("/api/v4/account")
    assert caught.value.retry_after == pytest.approx(300) and len(kommo.requests) == 1


def test_kommos_ban_page_blocks_the_account_and_holds_every_account_of_the_address(
    kommo: KommoStandIn, sim: SimClock
) -> None:
    other = save_account_with_token(TOKEN, account_id=OTHER_ACCOUNT)
    # WHEN Kommo has banned the address, and answers nginx's plain 403 page
    kommo.ban()
    with pytest.raises(KommoAccessDenied):
        client(sim).get("/api/v4/account")
    assert AccountModel.get(seed.ACCOUNT_ID, consistent_read=True).status == "blocked"
    # THEN the other account is not blocked, but sends nothing through the banned address
    with pytest.raises(KommoBusy) as caught:
        client_for_account(other, clock=sim).get("/api/v4/account")
    assert caught.value.retry_after == pytest.approx(900) and is_retryable(caught.value)
    assert AccountModel.get(OTHER_ACCOUNT, consistent_read=True).status == "active"
    assert len(kommo.requests) == 1
    # AND after the cool-off both call again
    sim.advance(900)
    assert client_for_account(other, clock=sim).get("/api/v4/account") is not None
    assert client(sim).get("/api/v4/account") is not None


def test_a_429_asking_for_300_s_pauses_every_caller_of_the_account_until_then(
    kommo: KommoStandIn, sim: SimClock
) -> None:
    lead = f"/api/v4/leads/{seed.LEAD_OFFER}"
    kommo.fail_next(429, body={"title": "Too Many Requests", "status": 429, "retry_after": 300})
    started = sim.timestamp()
    # WHEN Kommo answers 429 with retry_after 300
    with pytest.raises(KommoRateLimited) as caught:
        client(sim).get(lead)
    # THEN the caller stops at once, with Kommo's wait for its queue
    assert caught.value.retry_after == 300 and is_retryable(caught.value)
    assert sim.timestamp() == started and [r.status for r in kommo.requests] == [429]
    # AND another Lambda's client sends nothing until then: it is told what is left of the wait
    sim.advance(100)
    with pytest.raises(KommoRateLimited) as again:
        client(sim).get(lead)
    assert again.value.retry_after == pytest.approx(200)
    assert len(kommo.requests) == 1
    # WHEN the wait is over, calls go through again
    sim.advance(200)
    assert client(sim).get(lead) is not None
    assert [r.status for r in kommo.requests] == [429, 200]


def test_callers_that_meet_kommos_own_429_stop_so_the_address_is_never_banned(
    kommo: KommoStandIn, sim: SimClock
) -> None:
    # GIVEN Kommo lets only 3 requests per second through this address (others use it too)
    kommo.limits.rate_limit = 3

    # WHEN four workers each try ten calls at once, as our budget of 7 per second allows
    def work(n: int) -> int:
        worker, refused = client(sim), 0
        for _ in range(10):
            try:
                worker.get(f"/api/v4/leads/{seed.LEAD_OFFER}")
            except KommoBusy:
                refused += 1
        return refused

    refused = sum(sim.run_threads(4, work))
    # THEN Kommo answered one 429 (with its 300 s) and was asked nothing more: never banned
    statuses = [r.status for r in kommo.requests]
    assert statuses == [200, 200, 200, 429]
    assert refused == 40 - 3  # every other call was refused here, with Kommo's wait
    assert AccountModel.get(seed.ACCOUNT_ID, consistent_read=True).status == "active"
    # AND after Kommo's wait the calls go through again
    sim.advance(300)
    assert client(sim).get(f"/api/v4/leads/{seed.LEAD_OFFER}") is not None


def test_a_403_blocks_the_account_and_later_calls_refuse_without_reaching_kommo(
    kommo: KommoStandIn, sim: SimClock, caplog: pytest.LogCaptureFixture
) -> None:
    worker = client(sim)
    kommo.fail_next(403, body={"title": "Forbidden", "status": 403, "detail": "Your IP address is blocked"})
    # WHEN Kommo answers 403
    with pytest.raises(KommoAccessDenied) as caught:
        worker.get("/api/v4/account")
    assert caught.value.kommo_status == 403
    # THEN the account is marked blocked with the time and Kommo's words, loudly
    account = AccountModel.get(seed.ACCOUNT_ID, consistent_read=True)
    assert account.status == "blocked" and "IP address is blocked" in str(account.status_detail)
    assert account.blocked_until == pytest.approx(sim.timestamp() + 900)
    [error] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert error.__dict__["account_id"] == seed.ACCOUNT_ID
    # AND neither this client nor a new one (another Lambda) sends anything more
    seen = len(kommo.requests)
    with pytest.raises(KommoAccessDenied):
        worker.get("/api/v4/account")
    with pytest.raises(KommoAccessDenied, match="no request goes to it until"):
        client(sim)
    assert len(kommo.requests) == seen == 1
    # WHEN the cool-off has passed
    sim.advance(901)
    assert client(sim).get("/api/v4/account") is not None
    # THEN calls go through again and the account is active
    assert AccountModel.get(seed.ACCOUNT_ID, consistent_read=True).status == "active"


def test_a_403_refusing_a_managers_token_its_rights_refuses_that_call_and_blocks_nothing(
    kommo: KommoStandIn, sim: SimClock, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN the account's token is a manager's: Kommo lists users to administrators only
    kommo.add_token(seed.ACCOUNT_ID, MANAGER_TOKEN, user_id=seed.MANAGER_USER_ID)
    save_account_with_token(MANAGER_TOKEN)
    worker = client(sim)
    # WHEN Kommo refuses the call with its rights 403 (a problem+json body)
    with pytest.raises(KommoInsufficientRights) as caught:
        worker.users()
    assert caught.value.kommo_status == 403 and not is_retryable(caught.value)
    # THEN the account is not blocked, nothing was logged as an error
    assert AccountModel.get(seed.ACCOUNT_ID, consistent_read=True).status == "active"
    assert [r for r in caplog.records if r.levelname == "ERROR"] == []
    # AND this client and any other go on calling what the token may do
    assert worker.get("/api/v4/account") is not None
    assert client(sim).get(f"/api/v4/leads/{seed.LEAD_OFFER}") is not None
    assert [r.status for r in kommo.requests] == [403, 200, 200]


def test_a_504_on_a_250_id_batch_halves_it_and_succeeds(kommo: KommoStandIn, sim: SimClock) -> None:
    kommo.gateway_timeout_over = 200  # Kommo's gateway gives up on more than 200 ids
    ids = [25100000 + n for n in range(250)]
    found = client(sim).contacts_by_ids(ids)
    assert sorted(found) == ids
    assert [(r.status, r.query.count("filter%5Bid%5D")) for r in kommo.requests] == [
        (504, 250),
        (200, 125),
        (200, 125),
    ]


def test_a_504_on_a_batch_update_halves_it_but_a_batch_create_is_not_repeated(
    kommo: KommoStandIn, sim: SimClock
) -> None:
    kommo.gateway_timeout_over = 200
    worker = client(sim)
    items = [{"id": 25100000 + n, "name": f"Renamed {n}"} for n in range(250)]
    assert len(worker.update_entities("contacts", items)) == 250
    assert [r.status for r in kommo.requests] == [504, 200, 200]
    assert kommo.contact(25100249)["name"] == "Renamed 249"  # type: ignore[index]
    # a create that times out may have created the tasks: it is not sent again
    kommo.gateway_timeout_over = None
    kommo.fail_next(504)
    with pytest.raises(KommoError) as caught:
        worker.add_tasks([NewTask("Call", 1795600000, "leads", seed.LEAD_OFFER)])
    assert caught.value.kommo_status == 504
    assert [r.status for r in kommo.requests][-1:] == [504] and len(kommo.requests) == 4


def test_a_wait_longer_than_allowed_raises_busy_for_the_queue_to_retry(
    kommo: KommoStandIn, sim: SimClock
) -> None:
    account = AccountModel.get(seed.ACCOUNT_ID)
    gate = AccountGate(account, clock=sim, max_wait=0.05)
    gate.before_request()
    with pytest.raises(KommoBusy) as caught:
        gate.before_request()
    assert 0.12 < cast(float, caught.value.retry_after) <= 1 / 7 / 0.9 + 0.001
