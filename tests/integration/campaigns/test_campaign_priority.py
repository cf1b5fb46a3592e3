"""A manager's single email goes out before a campaign's backlog on the same mailbox: not only
routed to the priority queue, but first at the SMTP server while bulk workers keep taking the
mailbox's turns (moto, a real SMTP server, send workers side by side as Lambda runs them)."""

from __future__ import annotations

import threading
import time
from typing import Any

import boto3
from mailer_core.sending.worker import SendWorker

from devstack.resources import StackResources
from tests.support.api_client import ApiClient
from tests.support.campaigns import PagedAudience, work_queues
from tests.support.fixtures.core import mailbox_body
from tests.support.smtp_servers import SmtpTestServer
from tests.support.sqs import receive_batch

MANAGER_TO = "client@customer.example"


def poll_once(queue_url: str) -> int:
    """One poll of a send queue worked as the send function would (a worker of its own)."""
    messages = receive_batch(queue_url)
    if not messages:
        return 0
    with SendWorker() as worker:
        outcomes = worker.process_batch([m["Body"] for m in messages])
    sqs = boto3.client("sqs")
    for message, outcome in zip(messages, outcomes, strict=True):
        if not isinstance(outcome, Exception):
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return len(messages)


def keep_polling(queue_url: str, stop: threading.Event, errors: list[BaseException]) -> None:
    while not stop.is_set():
        try:
            if poll_once(queue_url) == 0:
                time.sleep(0.05)
        except BaseException as exc:
            errors.append(exc)
            return


def arrived(smtp: SmtpTestServer) -> list[str]:
    return [m.rcpt_tos[0] for m in list(smtp.messages)]


def wait_for(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_managers_email_reaches_the_server_before_the_campaigns_next_emails(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources, paged_audience: PagedAudience
) -> None:
    # GIVEN a 5/s mailbox shared by a manager and a campaign whose 80 emails are queued on the
    # bulk lane, three bulk workers sending them (each batch's lane takes the mailbox's turns)
    reply = user.post("/v1/mailboxes", mailbox_body(smtp, rate_per_second=5))
    assert reply.status == 201, reply.body
    mailbox = str(reply.json()["id"])
    addresses = [f"c{n}@example.com" for n in range(80)]
    created = user.post(
        "/v1/campaigns",
        {
            "name": "Backlog",
            "subject": "News",
            "html": "<p>News</p>",
            "mailbox_ids": [mailbox],
            "audience": {"pages": [addresses]},
        },
    )
    assert created.status == 201, created.body
    campaign_id = created.json()["campaign_id"]
    assert user.post(f"/v1/campaigns/{campaign_id}/start", {}).status == 200
    work_queues(aws_stack, send=False, timeout=10)  # the backlog composed, nothing sent yet
    assert smtp.messages == []
    stop, errors = threading.Event(), []
    bulk = [
        threading.Thread(target=keep_polling, args=(aws_stack.refs["BulkSendQueue"], stop, errors))
        for _ in range(3)
    ]
    priority = threading.Thread(target=keep_polling, args=(aws_stack.refs["SendQueue"], stop, errors))
    for thread in [*bulk, priority]:
        thread.start()
    try:
        wait_for(lambda: len(smtp.messages) >= 5, timeout=20)  # the campaign is under way

        # WHEN a manager composes one email on the same mailbox
        composed = user.post(
            "/v1/messages",
            {"mailbox_id": mailbox, "to": [MANAGER_TO], "subject": "Your offer", "html": "<p>Hi</p>"},
        )
        assert composed.status == 202, composed.body
        before = len(arrived(smtp))
        wait_for(lambda: MANAGER_TO in arrived(smtp), timeout=20)
        wait_for(lambda: len(smtp.messages) >= before + 6, timeout=20)  # the campaign goes on
    finally:
        stop.set()
        for thread in [*bulk, priority]:
            thread.join(timeout=30)
    assert errors == []

    # THEN it reached the server before the campaign's next emails: at most the one whose turn
    # was already taken when the manager's compose was answered came in between (a mailbox's
    # bucket grants one turn ahead at most), and the campaign went on
    order = arrived(smtp)[before:]
    assert order.index(MANAGER_TO) <= 1, order
    assert len(order) >= 6
