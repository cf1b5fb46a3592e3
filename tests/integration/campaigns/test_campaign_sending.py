"""Campaigns end to end against moto and a real SMTP server: every address once, the
suppression list honoured, pause and resume without repeats, cancel, and the log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from mailer_core.store.models import SuppressionModel

from devstack.resources import StackResources
from tests.support.api_client import ApiClient
from tests.support.campaigns import PagedAudience, work_queues
from tests.support.fixtures.core import ACCOUNT, mailbox_body
from tests.support.smtp_servers import SmtpTestServer


def new_campaign(user: ApiClient, mailbox_ids: list[str], pages: list[list[str]], **extra: Any) -> str:
    body = {
        "name": "Winter sale",
        "subject": "Sale for {{ 'you' }}",
        "html": "<p>Hello! <a href='https://shop.example/sale'>Sale</a></p>",
        "mailbox_ids": mailbox_ids,
        "audience": {"pages": pages},
        **extra,
    }
    reply = user.post("/v1/campaigns", body)
    assert reply.status == 201, reply.body
    return str(reply.json()["campaign_id"])


def fast_mailbox(user: ApiClient, smtp: SmtpTestServer, **overrides: Any) -> str:
    reply = user.post("/v1/mailboxes", mailbox_body(smtp, rate_per_second=100, **overrides))
    assert reply.status == 201, reply.body
    return str(reply.json()["id"])


def delivered_to(smtp: SmtpTestServer) -> list[str]:
    return sorted(address for m in smtp.messages for address in m.rcpt_tos)


def status_of(user: ApiClient, campaign_id: str) -> str:
    return str(user.get(f"/v1/campaigns/{campaign_id}").json()["status"])


def test_a_campaign_writes_to_every_address_once_and_skips_the_suppressed(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources, paged_audience: PagedAudience
) -> None:
    # GIVEN an audience over three pages with an address repeated across pages and in one page,
    # and a suppressed address
    mailbox = fast_mailbox(user, smtp)
    pages = [
        ["a@example.com", "b@example.com", "A@Example.com"],
        ["c@example.com", "b@example.com"],
        ["gone@example.com", "d@example.com"],
    ]
    SuppressionModel(
        ACCOUNT, "gone@example.com", reason="user_unknown", state="suppressed", created_at=datetime.now(UTC)
    ).save()
    campaign_id = new_campaign(user, [mailbox], pages)
    # WHEN it is started and the queues are worked
    started = user.post(f"/v1/campaigns/{campaign_id}/start", {})
    assert started.status == 200, started.body
    assert started.json()["status"] == "sending"
    work_queues(aws_stack, until=lambda: status_of(user, campaign_id) == "sent")
    # THEN each address got one email, the suppressed one none, and the counts say why
    assert delivered_to(smtp) == ["a@example.com", "b@example.com", "c@example.com", "d@example.com"]
    view = user.get(f"/v1/campaigns/{campaign_id}").json()
    progress = view["progress"]
    assert progress["recipients"] == 4 and progress["sent"] == 4 and progress["percent"] == 100.0
    assert progress["excluded"]["duplicate"] == 2 and progress["excluded"]["suppressed"] == 1
    assert paged_audience.reads == 3  # each page read once, at the start for the first
    log = user.get(f"/v1/campaigns/{campaign_id}/log").json()["items"]
    assert sorted(line["address"] for line in log) == [
        "a@example.com",
        "b@example.com",
        "c@example.com",
        "d@example.com",
    ]
    assert {line["status"] for line in log} == {"sent"}


def test_a_repeated_part_composes_and_sends_nobody_twice(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources, paged_audience: PagedAudience
) -> None:
    # GIVEN a started campaign whose first part job is delivered twice (SQS at least once)
    mailbox = fast_mailbox(user, smtp)
    campaign_id = new_campaign(user, [mailbox], [[f"r{n}@example.com" for n in range(5)]])
    import boto3

    sqs = boto3.client("sqs")
    user.post(f"/v1/campaigns/{campaign_id}/start", {})
    [job] = sqs.receive_message(QueueUrl=aws_stack.refs["CampaignQueue"])["Messages"]
    sqs.send_message(QueueUrl=aws_stack.refs["CampaignQueue"], MessageBody=job["Body"])
    sqs.change_message_visibility(
        QueueUrl=aws_stack.refs["CampaignQueue"], ReceiptHandle=job["ReceiptHandle"], VisibilityTimeout=0
    )
    # WHEN everything is worked
    work_queues(aws_stack, until=lambda: status_of(user, campaign_id) == "sent")
    # THEN five emails, once each
    assert delivered_to(smtp) == [f"r{n}@example.com" for n in range(5)]
    assert user.get(f"/v1/campaigns/{campaign_id}").json()["progress"]["recipients"] == 5


def test_pause_holds_the_queued_emails_and_resume_sends_them_once(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources, paged_audience: PagedAudience
) -> None:
    # GIVEN a campaign whose first part is composed and queued
    mailbox = fast_mailbox(user, smtp)
    addresses = [f"p{n}@example.com" for n in range(6)]
    campaign_id = new_campaign(user, [mailbox], [addresses[:3], addresses[3:]])
    user.post(f"/v1/campaigns/{campaign_id}/start", {})
    work_queues(aws_stack, send=False, timeout=5)  # the parts composed, nothing sent yet
    # WHEN it is paused before the send worker runs, and the queues are worked
    assert user.post(f"/v1/campaigns/{campaign_id}/pause").json()["status"] == "paused"
    from mailer_core.events import campaign_state

    campaign_state.forget_statuses()
    work_queues(aws_stack, timeout=5)
    # THEN nothing went out: the emails are held
    assert smtp.messages == []
    held = user.get(f"/v1/campaigns/{campaign_id}/log?state=held").json()["items"]
    assert len(held) == 6
    # WHEN it resumes
    assert user.post(f"/v1/campaigns/{campaign_id}/resume").json()["status"] == "sending"
    campaign_state.forget_statuses()
    work_queues(aws_stack, until=lambda: status_of(user, campaign_id) == "sent")
    # THEN each address got its email once
    assert delivered_to(smtp) == addresses


def test_cancel_cancels_what_was_not_sent(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources, paged_audience: PagedAudience
) -> None:
    mailbox = fast_mailbox(user, smtp)
    campaign_id = new_campaign(user, [mailbox], [["x@example.com", "y@example.com"]])
    user.post(f"/v1/campaigns/{campaign_id}/start", {})
    work_queues(aws_stack, send=False, timeout=5)
    assert user.post(f"/v1/campaigns/{campaign_id}/cancel").json()["status"] == "canceled"
    work_queues(aws_stack, timeout=5)
    assert smtp.messages == []
    view = user.get(f"/v1/campaigns/{campaign_id}").json()
    assert view["progress"]["canceled"] == 2 and view["status"] == "canceled"
    assert user.post(f"/v1/campaigns/{campaign_id}/resume").status == 409


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "mailbox_ids": [], "audience": {"pages": [["a@example.com"]]}}, "mailbox_ids"),
        (
            {"name": "x", "mailbox_ids": ["nope"], "audience": {"pages": [["a@example.com"]]}},
            "mailbox_ids[0]",
        ),
        (
            {
                "name": "x",
                "mailbox_ids": ["m"],
                "audience": {"pages": [["a@example.com"]]},
                "options": {"per_hour": 0},
            },
            "options.per_hour",
        ),
        ({"mailbox_ids": ["m"], "audience": {"pages": [["a@example.com"]]}}, "name"),
    ],
)
def test_bad_campaigns_are_refused_naming_the_field(
    user: ApiClient, smtp: SmtpTestServer, paged_audience: PagedAudience, body: dict[str, Any], field: str
) -> None:
    mailbox = fast_mailbox(user, smtp)
    body = {**body, "mailbox_ids": [mailbox if m == "m" else m for m in body["mailbox_ids"]]}
    reply = user.post("/v1/campaigns", {"subject": "s", "html": "<p>h</p>", **body})
    assert reply.status in (400, 422), reply.body
    assert reply.json()["field"] == field


def test_a_start_in_the_past_an_empty_audience_and_edits_while_sending_are_refused(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources, paged_audience: PagedAudience
) -> None:
    mailbox = fast_mailbox(user, smtp)
    campaign_id = new_campaign(user, [mailbox], [["a@example.com"]])
    past = user.post(f"/v1/campaigns/{campaign_id}/start", {"send_at": "2020-01-01T00:00:00Z"})
    assert past.status == 422 and past.json()["field"] == "send_at"
    empty = new_campaign(user, [mailbox], [[]])
    refused = user.post(f"/v1/campaigns/{empty}/start", {})
    assert refused.status == 422 and refused.json()["field"] == "audience"
    assert user.post(f"/v1/campaigns/{campaign_id}/start", {}).status == 200
    locked = user.patch(f"/v1/campaigns/{campaign_id}", {"name": "Renamed"})
    assert locked.status == 409 and locked.json()["error"] == "locked"
    assert user.delete(f"/v1/campaigns/{campaign_id}").status == 409
    assert user.get(f"/v1/campaigns/{campaign_id}").json()["name"] == "Winter sale"


def test_a_fast_mailboxs_emails_reach_the_bulk_queue_in_bundles_and_each_goes_once(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources, paged_audience: PagedAudience
) -> None:
    import boto3

    # GIVEN a campaign of 30 recipients from one 100/s mailbox (its part due within a second)
    mailbox = fast_mailbox(user, smtp)
    campaign_id = new_campaign(user, [mailbox], [[f"r{n:02d}@example.com" for n in range(30)]])
    # WHEN it is started and its part composed
    user.post(f"/v1/campaigns/{campaign_id}/start", {})
    work_queues(aws_stack, send=False, until=lambda: bool(campaign_counts(user, campaign_id)))
    # THEN its 30 emails wait in 2 SQS messages (bundles of at most 25), and all go out once
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=aws_stack.refs["BulkSendQueue"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"],
    )["Attributes"]
    assert sum(int(v) for v in attributes.values()) == 2
    work_queues(aws_stack, until=lambda: status_of(user, campaign_id) == "sent")
    assert delivered_to(smtp) == [f"r{n:02d}@example.com" for n in range(30)]


def campaign_counts(user: ApiClient, campaign_id: str) -> int:
    return int(user.get(f"/v1/campaigns/{campaign_id}").json()["progress"]["recipients"])
