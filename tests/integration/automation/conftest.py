"""Fixtures for the automation: the demo account in the Kommo stand-in, a sending mailbox, and
helpers that drain the actions queue into the actions function the way Lambda would."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from mailer_core.base.clock import FakeClock
from mailer_core.events import jobs
from mailer_core.store.models import MessageModel

from devstack import kommo_seed as seed
from devstack.kommo_standin import KommoStandIn
from devstack.resources import StackResources
from tests.integration.templates.conftest import (  # noqa: F401  (fixtures)
    admin,
    kommo,
    mailbox_body,
    manager,
    sample,
    smtp,
    stranger,
)
from tests.support.api_client import ApiClient, load_handler
from tests.support.smtp_servers import SmtpTestServer
from tests.support.sqs import deliver

LEAD = {"type": "leads", "id": seed.LEAD_OFFER}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(current=datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def mailbox(manager: ApiClient, smtp: SmtpTestServer, kommo: KommoStandIn) -> str:  # noqa: F811
    reply = manager.post("/v1/mailboxes", mailbox_body(smtp, rate_per_second=100))
    assert reply.status == 201, reply.body
    return str(reply.json()["id"])


def trigger(admin: ApiClient, name: str, kind: str, delay: int = 0, **params: Any) -> str:  # noqa: F811
    reply = admin.post("/v1/triggers", {"name": name, "type": kind, "params": params, "delay_seconds": delay})
    assert reply.status == 201, reply.body
    return str(reply.json()["id"])


def actions_jobs(stack: StackResources, *, delete: bool = True) -> list[jobs.EventJob | jobs.RunJob]:
    """What waits on the actions queue now (visible messages only)."""
    sqs = boto3.client("sqs")
    found = []
    while got := sqs.receive_message(QueueUrl=stack.refs["ActionsQueue"], MaxNumberOfMessages=10).get(
        "Messages"
    ):
        for m in got:
            found.append(jobs.parse_job(m["Body"]))
            if delete:
                sqs.delete_message(QueueUrl=stack.refs["ActionsQueue"], ReceiptHandle=m["ReceiptHandle"])
            else:
                sqs.change_message_visibility(
                    QueueUrl=stack.refs["ActionsQueue"], ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                )
        if not delete:
            break
    return found


def drain_actions(stack: StackResources, *, rounds: int = 10) -> int:
    """Feed the actions queue to the actions function until it is empty; how many were handled."""
    handled = 0
    arn = stack.attrs[("ActionsQueue", "Arn")]
    for _ in range(rounds):
        result = deliver(load_handler("actions"), stack.refs["ActionsQueue"], arn)
        if not result.get("delivered"):
            break
        handled += int(result["delivered"])
    return handled


def send_queued(stack: StackResources) -> int:
    arn = stack.attrs[("SendQueue", "Arn")]
    result = deliver(load_handler("send"), stack.refs["SendQueue"], arn)
    return int(result.get("delivered", 0))


def stored(message_id: str) -> MessageModel:
    return MessageModel.get(seed.ACCOUNT_ID, message_id, consistent_read=True)


def events_of(message_id: str) -> list[tuple[str, str]]:
    return [(h.event, h.detail or "") for h in stored(message_id).history or []]


def schedules() -> dict[str, dict[str, Any]]:
    client = boto3.client("scheduler")
    names = [s["Name"] for s in client.list_schedules(GroupName=_group()).get("Schedules", [])]
    return {n: json.loads(client.get_schedule(Name=n, GroupName=_group())["Target"]["Input"]) for n in names}


def _group() -> str:
    from mailer_core.base.config import get_settings

    return get_settings().schedule_group
