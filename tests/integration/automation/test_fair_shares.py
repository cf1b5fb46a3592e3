"""The actions queue's workers shared fairly: one account's backlog or spent Kommo budget never
holds another account's jobs (events.shares, store.worker_shares).

The actions function is driven the way Lambda drives it (a batch from the queue, partial
failures deleted by the test's event source); the Kommo client is the real one, against the
stand-in, with its waits on a fake clock so that a wait in-process is measured, not slept.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from mailer_core.adapters import sqs
from mailer_core.automation import runner as automation
from mailer_core.base.clock import FakeClock
from mailer_core.base.config import reset_settings
from mailer_core.events import jobs
from mailer_core.kommo import limits as kommo_limits
from mailer_core.kommo.accounts import client_for_account
from mailer_core.store import message_state as state
from mailer_core.store import rate_buckets, worker_shares
from mailer_core.store.models import AutomationFactModel, MessageModel, TriggerModel
from pynamodb.exceptions import DoesNotExist

from devstack.kommo_standin import seed
from devstack.kommo_standin.server import KommoStandIn
from devstack.resources import StackResources, load_template
from devstack.template import function_definitions
from tests.support.api_client import load_handler
from tests.support.fixtures.automation import SENT, runs
from tests.support.fixtures.templates import TOKEN
from tests.support.kommo_accounts import save_account_with_token
from tests.support.sqs import deliver

BUSY, OTHER = seed.ACCOUNT_ID, seed.ACCOUNT_ID + 1


@pytest.fixture
def fake_kommo_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The Kommo clients of the runs wait on this clock: its sleeps are the in-process waits."""
    clock = FakeClock(current=datetime.now(UTC))
    monkeypatch.setattr(
        automation, "_kommo_client", lambda account, _clock: client_for_account(account, clock=clock)
    )
    return clock


@pytest.fixture
def as_deployed(aws_stack: StackResources, kommo: KommoStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    """The actions function's own environment from the template (its Kommo wait, its share),
    and a second installed account on the same stand-in."""
    functions = function_definitions(load_template(), aws_stack)
    (actions,) = [f for f in functions if f.logical_id == "ActionsFunction"]
    for name in ("MAILER_KOMMO_MAX_RATE_WAIT_SECONDS", "MAILER_WORKER_SHARE"):
        if name in actions.environment:
            monkeypatch.setenv(name, str(actions.environment[name]))
    reset_settings()
    save_account_with_token(TOKEN, account_id=OTHER)


def queued_run(account_id: int) -> jobs.RunJob:
    """A "note" trigger's run for a sent email of `account_id`, on the actions queue."""
    n = next(runs)
    message = MessageModel(
        account_id,
        f"01MSG{n:021d}",
        status=state.SENT,
        status_key=state.status_key(account_id, state.SENT),
        user_id=seed.MANAGER_USER_ID,
        mailbox_id="mbx",
        to=["ivan@example.com"],
        entity_type="leads",
        entity_id=seed.LEAD_OFFER,
        subject="s",
        sent_subject="s",
        html="<p>x</p>",
        header_message_id=f"<{n}@example.com>",
        created_at=SENT,
        updated_at=SENT,
        sent_at=SENT,
    )
    message.save()
    trigger = TriggerModel(
        account_id,
        f"T{n:025d}",
        name="a note",
        type="note",
        params={"text": f"account {account_id}"},
        delay_seconds=0,
        user_id=seed.ADMIN_USER_ID,
        created_at=SENT,
        updated_at=SENT,
    )
    trigger.save()
    job = jobs.RunJob(
        account_id,
        message.message_id,
        trigger.trigger_id,
        "sent",
        automation.run_id_for(message.message_id, "sent", trigger.trigger_id),
        int(SENT.timestamp() * 1000),
    )
    sqs.enqueue_actions([(job.to_body(), 0)])
    return job


def run_state(job: jobs.RunJob) -> str | None:
    try:
        return str(AutomationFactModel.get(job.account_id, f"run#{job.run_id}", consistent_read=True).state)
    except DoesNotExist:
        return None


def notes_for(kommo: KommoStandIn, account_id: int) -> int:
    return sum(1 for n in kommo.notes("leads") if n["params"]["text"] == f"account {account_id}")


def delayed_on_queue(stack: StackResources) -> int:
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=stack.refs["ActionsQueue"], AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessagesDelayed"])


def one_batch(stack: StackResources) -> dict[str, Any]:
    return deliver(load_handler("actions"), stack.refs["ActionsQueue"], stack.attrs[("ActionsQueue", "Arn")])


@pytest.mark.usefixtures("as_deployed")
def test_a_backlog_of_one_account_leaves_the_other_worker_to_the_others(
    aws_stack: StackResources, kommo: KommoStandIn, fake_kommo_clock: FakeClock
) -> None:
    # GIVEN the other worker is busy with one of BUSY's jobs, and BUSY has a backlog ahead of OTHER's
    now = datetime.now(UTC).timestamp()
    other_worker = worker_shares.acquire(
        "actions", str(BUSY), "the-other-worker", share=1, now=now, lease_seconds=120
    )
    assert other_worker.granted
    backlog = [queued_run(BUSY) for _ in range(5)]
    waiting = queued_run(OTHER)

    # WHEN this worker takes a batch
    result = one_batch(aws_stack)

    # THEN OTHER's job is done, and BUSY's wait on the queue (delayed, not failed, not claimed)
    assert result["delivered"] == 6 and result["batchItemFailures"] == []
    assert run_state(waiting) == "done" and notes_for(kommo, OTHER) == 1
    assert [run_state(job) for job in backlog] == [None] * 5
    assert notes_for(kommo, BUSY) == 0
    assert delayed_on_queue(aws_stack) == 5
    # and this worker holds no lease once its batch is done
    assert worker_shares.in_flight("actions", str(OTHER)) == {}
    assert set(worker_shares.in_flight("actions", str(BUSY))) == {"the-other-worker"}


@pytest.mark.usefixtures("as_deployed")
def test_an_account_over_its_kommo_budget_waits_on_the_queue_not_in_the_worker(
    aws_stack: StackResources, kommo: KommoStandIn, fake_kommo_clock: FakeClock
) -> None:
    # GIVEN BUSY's Kommo budget is taken by other callers for the next 5 seconds
    now = fake_kommo_clock.timestamp()
    assert rate_buckets.take(
        kommo_limits.bucket_key(BUSY), rate_per_second=0.2, daily_cap=10**12, now=now
    ).allowed
    over_budget = [queued_run(BUSY) for _ in range(3)]
    waiting = queued_run(OTHER)

    # WHEN one worker takes the batch
    result = one_batch(aws_stack)

    # THEN OTHER's job went through without the worker waiting for BUSY's budget
    assert run_state(waiting) == "done" and notes_for(kommo, OTHER) == 1
    assert fake_kommo_clock.timestamp() - now <= 1.0  # at most "a moment" waited in-process
    # and BUSY's jobs are back on the queue for the wait: no attempt failed, none lost
    assert result["batchItemFailures"] == []
    assert notes_for(kommo, BUSY) == 0
    assert delayed_on_queue(aws_stack) == 3
    assert run_state(over_budget[0]) == "retry"  # tried once; the others went back untried
    assert [run_state(job) for job in over_budget[1:]] == [None, None]
