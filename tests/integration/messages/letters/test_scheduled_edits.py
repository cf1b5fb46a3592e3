"""A scheduled message changed or deleted before it is released (docs/letters.md#scheduled)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from mailer_core.adapters import sqs
from mailer_core.base.clock import SYSTEM_CLOCK
from mailer_core.sending import outcomes
from mailer_core.store.models import MessageModel

from devstack.resources import StackResources
from tests.support.api_client import ApiClient, LambdaContext, load_handler
from tests.support.fixtures.core import ACCOUNT, mailbox_body


@pytest.fixture
def mailbox_id(user: ApiClient) -> str:
    return str(user.post("/v1/mailboxes", mailbox_body()).json()["id"])


def schedule_of(stack: StackResources, message_id: str) -> dict[str, object]:
    return boto3.client("scheduler").get_schedule(
        Name=f"send-{ACCOUNT}-{message_id}", GroupName=stack.refs["ScheduleGroup"]
    )


def scheduled(user: ApiClient, at: datetime) -> str:
    reply = user.post(
        "/v1/messages", {"to": ["a@example.com"], "subject": "s", "html": "h", "send_at": at.isoformat()}
    )
    assert reply.status == 202 and reply.json()["status"] == "scheduled", reply.body
    return str(reply.json()["id"])


def test_a_scheduled_message_is_changed_and_its_schedule_follows_the_new_time(
    user: ApiClient, mailbox_id: str, aws_stack: StackResources
) -> None:
    first = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    message_id = scheduled(user, first)
    later = first + timedelta(days=1)
    changed = user.patch(
        f"/v1/messages/{message_id}",
        {
            "subject": "New subject",
            "html": "<p>New</p>",
            "to": ["b@example.com"],
            "send_at": later.isoformat(),
        },
    )
    assert changed.status == 200, changed.body
    view = changed.json()
    assert (view["subject"], view["to"], view["status"]) == ("New subject", ["b@example.com"], "scheduled")
    assert view["send_at"] == later.isoformat()
    assert view["history"][-1]["event"] == "edited"
    assert "subject, body, to, send time" in view["history"][-1]["detail"]
    assert schedule_of(aws_stack, message_id)["ScheduleExpression"] == f"at({later:%Y-%m-%dT%H:%M:%S})"
    assert MessageModel.get(ACCOUNT, message_id).html == "<p>New</p>"


def test_a_released_message_is_no_longer_changed_or_deleted(
    user: ApiClient, mailbox_id: str, aws_stack: StackResources
) -> None:
    message_id = scheduled(user, datetime.now(UTC) + timedelta(days=2))
    # GIVEN the timer fired: scheduled -> queued
    event = json.loads(schedule_of(aws_stack, message_id)["Target"]["Input"])  # type: ignore[index]
    assert load_handler("timers").lambda_handler(event, LambdaContext()) == {"result": "queued"}
    # THEN an edit and a delete answer 409 with the status, and nothing changed
    edit = user.patch(f"/v1/messages/{message_id}", {"subject": "late"})
    assert edit.status == 409 and edit.json()["status"] == "queued"
    assert user.delete(f"/v1/messages/{message_id}").json()["status"] == "queued"
    assert MessageModel.get(ACCOUNT, message_id).subject == "s"


def test_a_message_a_worker_claimed_is_not_changed(user: ApiClient, mailbox_id: str) -> None:
    # GIVEN an SQS-delayed scheduled message whose time came and a worker claimed it
    message_id = scheduled(user, datetime.now(UTC) + timedelta(minutes=5))
    MessageModel(ACCOUNT, message_id).update(actions=[MessageModel.send_at.set(datetime.now(UTC))])
    claimed = outcomes.claim(sqs.SendJob(ACCOUNT, message_id, mailbox_id, "priority"), SYSTEM_CLOCK)
    assert isinstance(claimed, MessageModel) and claimed.status == "sending"
    # THEN the user's edit loses the race: 409, and the claimed body is the one sent
    edit = user.patch(f"/v1/messages/{message_id}", {"html": "<p>changed</p>"})
    assert edit.status == 409 and edit.json()["status"] == "sending"
    assert MessageModel.get(ACCOUNT, message_id).html == "h"


def test_deleting_a_scheduled_message_removes_it_and_its_schedule(
    user: ApiClient, mailbox_id: str, aws_stack: StackResources
) -> None:
    message_id = scheduled(user, datetime.now(UTC) + timedelta(days=2))
    assert user.delete(f"/v1/messages/{message_id}").status == 204
    assert user.get(f"/v1/messages/{message_id}").status == 404
    listed = boto3.client("scheduler").list_schedules(GroupName=aws_stack.refs["ScheduleGroup"])["Schedules"]
    assert listed == []


def test_a_queued_message_is_neither_changed_nor_deleted(user: ApiClient, mailbox_id: str) -> None:
    message_id = user.post("/v1/messages", {"to": ["a@example.com"], "subject": "s", "html": "h"}).json()[
        "id"
    ]
    assert user.patch(f"/v1/messages/{message_id}", {"subject": "x"}).status == 409
    assert user.delete(f"/v1/messages/{message_id}").status == 409


def test_bad_edits_name_the_field(user: ApiClient, colleague: ApiClient, mailbox_id: str) -> None:
    message_id = scheduled(user, datetime.now(UTC) + timedelta(days=2))
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    assert user.patch(f"/v1/messages/{message_id}", {"send_at": past}).json()["field"] == "send_at"
    assert user.patch(f"/v1/messages/{message_id}", {"to": []}).json()["field"] == "to"
    assert user.patch(f"/v1/messages/{message_id}", {"html": "{{ broken"}).json()["field"] == "html"
    assert user.patch(f"/v1/messages/{message_id}", {"lane": "bulk"}).status == 422
    assert colleague.patch(f"/v1/messages/{message_id}", {"subject": "x"}).status == 404
    assert colleague.delete(f"/v1/messages/{message_id}").status == 404
