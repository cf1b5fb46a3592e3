"""Compose, read, list, cancel and resend through the api function."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from mailer_core.adapters import sqs
from mailer_core.store.models import MessageModel

from devstack.resources import StackResources
from tests.support.api_client import ApiClient
from tests.support.fixtures.core import ACCOUNT, mailbox_body


@pytest.fixture
def mailbox_id(user: ApiClient) -> str:
    return str(user.post("/v1/mailboxes", mailbox_body()).json()["id"])


def queued_jobs(stack: StackResources, queue: str = "SendQueue") -> list[dict[str, Any]]:
    sqs_client = boto3.client("sqs")
    url = stack.refs[queue]
    jobs = []
    while True:
        got = sqs_client.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0, AttributeNames=["All"]
        ).get("Messages", [])
        if not got:
            return jobs
        for m in got:
            jobs.append(json.loads(m["Body"]))
            sqs_client.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def test_compose_stores_the_message_queued_and_puts_one_job_on_the_priority_queue(
    user: ApiClient, mailbox_id: str, aws_stack: StackResources
) -> None:
    reply = user.post(
        "/v1/messages",
        {
            "to": ["Client@Example.com"],
            "cc": ["boss@example.com"],
            "subject": "Коммерческое предложение",
            "html": "<p>Hello</p>",
        },
    )

    assert reply.status == 202
    message = reply.json()
    assert message["status"] == "queued"
    assert message["mailbox_id"] == mailbox_id
    assert message["message_id_header"] == f"<{message['id']}@example.com>"
    assert [h["event"] for h in message["history"]] == ["queued"]
    assert queued_jobs(aws_stack) == [
        {
            "account_id": ACCOUNT,
            "message_id": message["id"],
            "mailbox_id": mailbox_id,
            "lane": "priority",
            # every address, so the worker checks a batch's against the suppression list at once
            "recipients": [*message["to"], *message["cc"], *message["bcc"]],
        }
    ]
    assert queued_jobs(aws_stack, "BulkSendQueue") == []


def test_bulk_lane_goes_to_the_bulk_queue(
    user: ApiClient, mailbox_id: str, aws_stack: StackResources
) -> None:
    user.post("/v1/messages", {"to": ["a@example.com"], "subject": "s", "html": "h", "lane": "bulk"})
    assert len(queued_jobs(aws_stack, "BulkSendQueue")) == 1
    assert queued_jobs(aws_stack) == []


def test_send_at_within_fifteen_minutes_uses_an_sqs_delay(
    user: ApiClient, mailbox_id: str, aws_stack: StackResources
) -> None:
    at = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    message = user.post("/v1/messages", {"to": ["a@example.com"], "send_at": at}).json()

    assert message["status"] == "scheduled"
    assert queued_jobs(aws_stack) == []  # invisible for now
    listed = boto3.client("scheduler").list_schedules(GroupName=aws_stack.refs["ScheduleGroup"])["Schedules"]
    assert listed == []


def test_send_at_far_ahead_creates_a_one_time_schedule_for_the_timers_function(
    user: ApiClient, mailbox_id: str, aws_stack: StackResources
) -> None:
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    message = user.post("/v1/messages", {"to": ["a@example.com"], "send_at": at.isoformat()}).json()

    name = f"send-{ACCOUNT}-{message['id']}"
    schedule = boto3.client("scheduler").get_schedule(Name=name, GroupName=aws_stack.refs["ScheduleGroup"])
    assert schedule["ScheduleExpression"] == f"at({at:%Y-%m-%dT%H:%M:%S})"
    assert schedule["ActionAfterCompletion"] == "DELETE"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert schedule["Target"]["Arn"].endswith(":function:mailer-local-timers")
    assert json.loads(schedule["Target"]["Input"])["message_id"] == message["id"]
    assert queued_jobs(aws_stack) == []


def test_cancel_a_scheduled_message_deletes_its_schedule(
    user: ApiClient, mailbox_id: str, aws_stack: StackResources
) -> None:
    at = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    message_id = user.post("/v1/messages", {"to": ["a@example.com"], "send_at": at}).json()["id"]

    reply = user.post(f"/v1/messages/{message_id}/cancel")

    assert reply.status == 200 and reply.json()["status"] == "canceled"
    assert (
        boto3.client("scheduler").list_schedules(GroupName=aws_stack.refs["ScheduleGroup"])["Schedules"] == []
    )
    again = user.post(f"/v1/messages/{message_id}/cancel")
    assert again.status == 409 and again.json()["status"] == "canceled"


def test_only_a_failed_message_can_be_sent_again(
    user: ApiClient, mailbox_id: str, aws_stack: StackResources
) -> None:
    message_id = user.post("/v1/messages", {"to": ["a@example.com"]}).json()["id"]
    queued_jobs(aws_stack)
    assert user.post(f"/v1/messages/{message_id}/retry").status == 409

    stored = MessageModel.get(ACCOUNT, message_id)
    stored.update(
        actions=[
            MessageModel.status.set("failed"),
            MessageModel.status_key.set(f"{ACCOUNT}#failed"),
            MessageModel.attempts.set(5),
            MessageModel.last_error.set("permanent: 550 no"),
        ]
    )
    reply = user.post(f"/v1/messages/{message_id}/retry")

    assert reply.status == 202
    assert reply.json()["status"] == "queued" and reply.json()["attempts"] == 0
    assert len(queued_jobs(aws_stack)) == 1


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"to": ["ok@example.com", "broken@"]}, 422, "to[1]"),
        ({"to": "x@example.com", "subject": 5}, 422, "subject"),
        ({}, 422, "to"),
        ({"to": ["a@example.com"], "mailbox_id": "nope"}, 422, "mailbox_id"),
        # found by the API fuzzing: an empty upload id was a key DynamoDB refuses (a 500)
        ({"to": ["a@example.com"], "attachments": [{"upload_id": ""}]}, 422, "attachments[0].upload_id"),
        ({"to": ["a@example.com"], "send_at": "tomorrow"}, 422, "send_at"),
        ({"to": ["a@example.com"], "send_at": "2026-12-01T10:00:00"}, 422, "send_at"),
        ({"to": ["a@example.com"], "lane": "express"}, 422, "lane"),
        ({"entity": {"type": "deals", "id": 1}}, 422, "entity.type"),
        ({"to": [f"r{i}@example.com" for i in range(51)]}, 422, "to"),
        ({"to": ["a@example.com"], "html": "x" * (8 * 1024 * 1024 + 1)}, 413, "html"),
    ],
)
def test_bad_compose_is_refused_with_the_field_and_nothing_is_stored(
    user: ApiClient, mailbox_id: str, aws_stack: StackResources, body: dict, status: int, field: str
) -> None:
    reply = user.post("/v1/messages", body)

    assert reply.status == status
    assert reply.json()["field"] == field
    assert user.get("/v1/messages").json()["items"] == []
    assert queued_jobs(aws_stack) == []


def test_list_by_status_newest_first_with_a_cursor(user: ApiClient, mailbox_id: str) -> None:
    ids = [
        user.post("/v1/messages", {"to": ["a@example.com"], "subject": str(i)}).json()["id"] for i in range(3)
    ]
    user.post(f"/v1/messages/{ids[1]}/cancel")

    first = user.get("/v1/messages?status=queued&limit=1").json()
    second = user.get(f"/v1/messages?status=queued&limit=1&cursor={first['next_cursor']}").json()
    canceled = user.get("/v1/messages?status=canceled").json()

    assert [m["id"] for m in first["items"]] == [ids[2]]
    assert [m["id"] for m in second["items"]] == [ids[0]]
    assert [m["id"] for m in canceled["items"]] == [ids[1]]
    assert user.get("/v1/messages?status=lost").json()["field"] == "status"
    assert user.get("/v1/messages?limit=0").status == 400


def test_the_whole_list_pages_with_a_cursor_and_refuses_another_listings(
    user: ApiClient, mailbox_id: str
) -> None:
    ids = [
        user.post("/v1/messages", {"to": ["a@example.com"], "subject": str(i)}).json()["id"] for i in range(2)
    ]

    first = user.get("/v1/messages?limit=1").json()
    second = user.get(f"/v1/messages?limit=1&cursor={first['next_cursor']}").json()
    by_status = user.get("/v1/messages?status=queued&limit=1").json()["next_cursor"]

    assert [m["id"] for m in first["items"] + second["items"]] == ids[::-1]
    refused = user.get(f"/v1/messages?limit=1&cursor={by_status}")
    assert refused.status == 400 and refused.json()["field"] == "cursor"
    assert user.get(f"/v1/messages?status=queued&cursor={first['next_cursor']}").status == 400


def test_a_cursor_of_another_account_or_status_or_not_a_key_is_the_callers_400(
    user: ApiClient, stranger: ApiClient, mailbox_id: str
) -> None:
    # GIVEN cursors this API gave out: one of the user's account, one of a status listing
    for i in range(2):
        user.post("/v1/messages", {"to": ["a@example.com"], "subject": str(i)})
    mine = user.get("/v1/messages?limit=1").json()["next_cursor"]
    queued = user.get("/v1/messages?status=queued&limit=1").json()["next_cursor"]
    # AND keys of the right attributes that DynamoDB would refuse to start a query at
    forged = [
        {"account_id": "31000001", "message_id": "01J"},  # not DynamoDB's attribute values
        {"account_id": {"N": "31000001"}, "message_id": {"N": "5"}},  # the sort key is a string
    ]

    refusals = [
        stranger.get(f"/v1/messages?limit=1&cursor={mine}"),  # another account's page
        user.get(f"/v1/messages?status=sent&cursor={queued}"),  # another status's page
        *(
            user.get(f"/v1/messages?cursor={base64.urlsafe_b64encode(json.dumps(k).encode()).decode()}")
            for k in forged
        ),
    ]

    assert [(r.status, r.json()["field"]) for r in refusals] == [(400, "cursor")] * 4
    assert user.get(f"/v1/messages?limit=1&cursor={mine}").status == 200


def test_one_entitys_messages_page_newest_first_with_a_cursor(
    user: ApiClient, colleague: ApiClient, admin: ApiClient, mailbox_id: str
) -> None:
    # GIVEN emails about two leads, a contact with the same id and no entity at all
    def compose(entity: dict[str, Any] | None, subject: str) -> str:
        body: dict[str, Any] = {"to": ["a@example.com"], "subject": subject}
        if entity:
            body["entity"] = entity
        return str(user.post("/v1/messages", body).json()["id"])

    lead = {"type": "leads", "id": 501}
    mine = [compose(lead, "first"), compose({"type": "contacts", "id": 501}, "contact")]
    mine += [compose(None, "none"), compose(lead, "second"), compose({"type": "leads", "id": 502}, "other")]
    mine.append(compose(lead, "third"))
    user.post(f"/v1/messages/{mine[3]}/cancel")

    first = user.get("/v1/messages?entity_type=lead&entity_id=501&limit=2").json()
    rest = user.get(f"/v1/messages?entity_type=leads&entity_id=501&limit=2&cursor={first['next_cursor']}")
    canceled = user.get("/v1/messages?entity_type=lead&entity_id=501&status=canceled").json()

    # THEN only that lead's, newest first, paged by the cursor; a status filters them
    assert [m["id"] for m in first["items"]] == [mine[5], mine[3]]
    assert [m["id"] for m in rest.json()["items"]] == [mine[0]]
    assert rest.json()["next_cursor"] is None
    assert [m["id"] for m in canceled["items"]] == [mine[3]]
    contact = user.get("/v1/messages?entity_type=contact&entity_id=501").json()["items"]
    assert [(m["id"], m["entity"]) for m in contact] == [(mine[1], {"type": "contacts", "id": 501})]
    # AND another user sees none of them; an administrator all of them
    assert colleague.get("/v1/messages?entity_type=lead&entity_id=501").json()["items"] == []
    assert len(admin.get("/v1/messages?entity_type=lead&entity_id=501").json()["items"]) == 3
    # AND a cursor of another listing is refused
    whole = user.get("/v1/messages?limit=1").json()["next_cursor"]
    for cursor in (whole, first["next_cursor"]):
        refused = user.get(f"/v1/messages?entity_type=lead&entity_id=502&cursor={cursor}")
        assert (refused.status, refused.json()["field"]) == (400, "cursor")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("entity_type=deal&entity_id=1", "entity_type"),
        ("entity_id=5", "entity_type"),
        ("entity_type=lead", "entity_id"),
        ("entity_type=lead&entity_id=0", "entity_id"),
        ("entity_type=lead&entity_id=-3", "entity_id"),
        ("entity_type=lead&entity_id=abc", "entity_id"),
        ("entity_type=lead&entity_id=1&status=lost", "status"),
    ],
)
def test_a_bad_entity_filter_is_a_422_naming_the_field(user: ApiClient, query: str, field: str) -> None:
    reply = user.get(f"/v1/messages?{query}")
    assert (reply.status, reply.json()["field"]) == (422, field)


def test_messages_are_private_to_their_account_and_user(
    user: ApiClient, colleague: ApiClient, admin: ApiClient, stranger: ApiClient, mailbox_id: str
) -> None:
    message_id = user.post("/v1/messages", {"to": ["a@example.com"]}).json()["id"]

    assert stranger.get(f"/v1/messages/{message_id}").status == 404
    assert stranger.post(f"/v1/messages/{message_id}/cancel").status == 404
    assert colleague.get(f"/v1/messages/{message_id}").status == 404
    assert colleague.get("/v1/messages").json()["items"] == []
    assert admin.get(f"/v1/messages/{message_id}").status == 200


def test_a_queue_outage_leaves_the_message_failed_with_the_reason(
    user: ApiClient, mailbox_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("sqs is down")

    monkeypatch.setattr(sqs, "enqueue_send", broken)
    reply = user.post("/v1/messages", {"to": ["a@example.com"]})

    assert reply.status == 502
    message_id = reply.json()["message_id"]
    stored = user.get(f"/v1/messages/{message_id}").json()
    assert stored["status"] == "failed"
    assert "could not queue" in stored["last_error"]


def test_a_large_body_is_kept_in_s3_not_in_the_item(user: ApiClient, mailbox_id: str) -> None:
    html = "<p>" + "Большое письмо. " * 20_000 + "</p>"
    message_id = user.post("/v1/messages", {"to": ["a@example.com"], "html": html}).json()["id"]
    stored = MessageModel.get(ACCOUNT, message_id)
    assert stored.html is None and stored.html_s3_key


def test_requests_without_a_valid_token_are_refused(user: ApiClient) -> None:
    missing = user.get("/v1/messages", auth=False)
    forged = user.get("/v1/messages", auth=False, headers={"x-auth-token": "abc.def.ghi"})
    assert missing.status == 401 and missing.json()["error"] == "unauthorized"
    assert forged.status == 401


def test_cors_preflight_allows_kommo_origins_only(user: ApiClient) -> None:
    ok = user.call("OPTIONS", "/v1/messages", auth=False, headers={"origin": "https://mailerdemo.kommo.com"})
    evil = user.call(
        "OPTIONS", "/v1/messages", auth=False, headers={"origin": "https://kommo.com.evil.example"}
    )

    assert ok.status == 204
    assert ok.headers["access-control-allow-origin"] == "https://mailerdemo.kommo.com"
    assert "X-Auth-Token" in ok.headers["access-control-allow-headers"]
    assert evil.status == 403 and "access-control-allow-origin" not in evil.headers
    get = user.get("/v1/me", headers={"origin": "https://mailerdemo.kommo.com"})
    assert get.headers["access-control-allow-origin"] == "https://mailerdemo.kommo.com"
