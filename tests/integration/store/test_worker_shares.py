"""An account's share of a shared worker pool (store.worker_shares), against moto's DynamoDB."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from mailer_core.store import worker_shares

NOW = datetime(2026, 12, 5, 12, 0, 0, tzinfo=UTC).timestamp()
LEASE = 120.0

pytestmark = pytest.mark.usefixtures("aws_stack")


def take(holder: str, *, account: str = "101", share: int = 1, now: float = NOW) -> bool:
    return worker_shares.acquire(
        "actions", account, holder, share=share, now=now, lease_seconds=LEASE
    ).granted


def test_an_account_gets_its_share_and_no_more() -> None:
    assert take("m-1", share=2)
    assert take("m-2", share=2)
    refused = worker_shares.acquire("actions", "101", "m-3", share=2, now=NOW + 1, lease_seconds=LEASE)

    assert not refused.granted
    assert refused.in_flight == 2
    assert refused.next_free == pytest.approx(NOW + LEASE)
    assert take("m-9", account="202", share=2)  # another account's share is its own


def test_a_released_slot_is_free_again() -> None:
    assert take("m-1")
    assert not take("m-2")
    worker_shares.release("actions", "101", "m-1")

    assert take("m-2")
    assert set(worker_shares.in_flight("actions", "101")) == {"m-2"}


def test_a_redelivered_job_renews_its_lease_and_never_counts_twice() -> None:
    assert take("m-1", share=2)
    assert take("m-1", share=2, now=NOW + 30)  # the same SQS message, delivered again

    leases = worker_shares.in_flight("actions", "101")
    assert leases == {"m-1": pytest.approx(NOW + 30 + LEASE)}
    assert take("m-2", share=2)  # the second slot is still free


def test_a_crashed_workers_slot_comes_back_when_its_lease_ends() -> None:
    assert take("crashed")  # its worker died: nobody releases it
    assert not take("m-2", now=NOW + LEASE - 1)

    assert take("m-2", now=NOW + LEASE + 1)
    assert set(worker_shares.in_flight("actions", "101")) == {"m-2"}


def test_queues_have_separate_shares() -> None:
    assert take("m-1")
    assert worker_shares.acquire("pipeline", "101", "p-1", share=1, now=NOW, lease_seconds=LEASE).granted


def test_releasing_a_lease_that_is_gone_is_harmless() -> None:
    worker_shares.release("actions", "101", "never-taken")
    assert take("m-1")
    worker_shares.release("actions", "101", "m-1")
    worker_shares.release("actions", "101", "m-1")
    assert worker_shares.in_flight("actions", "101") == {}
