"""A shared queue's batch worked within each account's share (events.shares.FairBatch), as the
actions, pipeline and install functions use it, against moto's SQS and DynamoDB."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from mailer_core.base.clock import FakeClock
from mailer_core.base.errors import Busy, InvalidInput
from mailer_core.events import shares
from mailer_core.store import worker_shares

from devstack.resources import StackResources

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def queue(stack: StackResources) -> str:
    return stack.refs["PipelineQueue"]


def delayed(stack: StackResources) -> int:
    """How many jobs were put back and wait their delay on the queue."""
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=queue(stack), AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessagesDelayed"])


def batch(stack: StackResources, **kw: Any) -> shares.FairBatch:
    return shares.FairBatch("pipeline", queue(stack), clock=FakeClock(current=NOW), share=1, **kw)


def body(account: int, n: int = 0) -> str:
    return json.dumps({"account_id": account, "n": n})


def test_a_busy_accounts_jobs_go_back_with_the_wait_and_the_others_run(aws_stack: StackResources) -> None:
    fair = batch(aws_stack)
    done: list[str] = []

    def busy() -> str:
        done.append("busy tried")
        raise _busy(7.2)

    outcomes = [
        fair.run(holder="m1", body=body(1, 1), account="1", work=busy),
        fair.run(holder="m2", body=body(1, 2), account="1", work=busy),
        fair.run(holder="m3", body=body(2, 3), account="2", work=lambda: "done"),
    ]

    assert outcomes == [shares.DEFERRED, shares.DEFERRED, "done"]
    assert done == ["busy tried"]  # the second job of the busy account went back untried
    assert [(account, delay) for account, delay, _ in fair.deferred] == [("1", 8), ("1", 8)]
    assert delayed(aws_stack) == 2
    fair.close()
    assert worker_shares.in_flight("pipeline", "1") == {}  # the batch let its leases go


def _busy(seconds: float) -> Busy:
    error = Busy("Kommo's budget is taken")
    error.retry_after = seconds
    return error


def test_a_job_over_its_accounts_share_goes_back_with_a_growing_delay(aws_stack: StackResources) -> None:
    now = NOW.timestamp()
    assert worker_shares.acquire("pipeline", "1", "elsewhere", share=1, now=now, lease_seconds=120).granted
    fair = batch(aws_stack)

    second, third = batch(aws_stack), batch(aws_stack)
    first = fair.run(holder="m1", body=body(1), account="1", work=lambda: "ran", deferrals=0)
    again = second.run(holder="m2", body=body(1), account="1", work=lambda: "ran", deferrals=3)
    often = third.run(holder="m3", body=body(1), account="1", work=lambda: "ran", deferrals=30)

    assert [first, again, often] == [shares.DEFERRED] * 3
    assert [d for _, d, _ in second.deferred + third.deferred] == [shares.SHARE_RETRY_CAP_SECONDS] * 2
    assert delayed(aws_stack) == 3
    message = boto3.client("sqs").receive_message(
        QueueUrl=queue(aws_stack), MessageAttributeNames=["All"], WaitTimeSeconds=0
    )
    assert "Messages" not in message  # all three wait their delay
    assert [delay for _, delay, _ in fair.deferred] == [shares.SHARE_RETRY_SECONDS]


def test_a_failing_job_fails_as_before_and_its_batch_keeps_the_slot_until_done(
    aws_stack: StackResources,
) -> None:
    fair = batch(aws_stack)

    def refused() -> str:
        raise InvalidInput("no such template", field="template_id")

    with pytest.raises(InvalidInput):
        fair.run(holder="m1", body=body(1), account="1", work=refused)
    assert fair.run(holder="m2", body=body(1), account="1", work=lambda: "done") == "done"
    assert set(worker_shares.in_flight("pipeline", "1")) == {"m2"}  # passed on, never two
    fair.close()
    assert worker_shares.in_flight("pipeline", "1") == {}


def test_a_worker_keeps_its_accounts_slot_through_its_batch_and_the_other_worker_defers(
    aws_stack: StackResources,
) -> None:
    first, second = batch(aws_stack), batch(aws_stack)
    ran: list[str] = []

    def job(name: str) -> Any:
        def work() -> str:
            ran.append(name)
            return name

        return work

    assert first.run(holder="a1", body=body(1), account="1", work=job("a1")) == "a1"
    # the other worker's jobs of the same account, between this worker's two
    assert second.run(holder="b1", body=body(1), account="1", work=job("b1")) == shares.DEFERRED
    assert second.run(holder="b2", body=body(2), account="2", work=job("b2")) == "b2"
    assert first.run(holder="a2", body=body(1), account="1", work=job("a2")) == "a2"

    assert ran == ["a1", "b2", "a2"]
    first.close()
    second.close()
    assert worker_shares.in_flight("pipeline", "1") == {}
    assert worker_shares.in_flight("pipeline", "2") == {}


def test_a_job_that_names_no_account_runs_as_before(aws_stack: StackResources) -> None:
    assert shares.account_in_body("not json", "account_id") is None
    assert shares.account_in_body('{"subdomain": "Acme", "domain": "kommo.com"}', "subdomain", "domain") == (
        "acme#kommo.com"
    )
    fair = batch(aws_stack)
    assert fair.run(holder="m1", body="not json", account=None, work=lambda: "refused") == "refused"
    assert fair.deferred == []


def test_the_deferral_count_rides_on_the_message(aws_stack: StackResources) -> None:
    assert shares.deferrals_of({"deferrals": {"stringValue": "4", "dataType": "Number"}}) == 4
    assert shares.deferrals_of({}) == 0
    assert shares.deferrals_of({"deferrals": {"stringValue": "x"}}) == 0
