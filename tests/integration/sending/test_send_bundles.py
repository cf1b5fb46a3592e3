"""Bundles: several send jobs of one mailbox in one SQS message (a campaign part's)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from mailer_core.adapters import sqs
from mailer_core.base.clock import FakeClock
from mailer_core.sending.worker import SendWorker
from mailer_core.store.models import MessageModel

from devstack.resources import StackResources
from tests.support.api_client import ApiClient, load_handler
from tests.support.fixtures.core import ACCOUNT, mailbox_body
from tests.support.smtp_servers import SmtpTestServer
from tests.support.sqs import deliver


def composed_jobs(user: ApiClient, stack: StackResources, count: int) -> list[sqs.SendJob]:
    """`count` emails composed for the bulk lane, their jobs taken off the bulk queue."""
    for n in range(count):
        reply = user.post(
            "/v1/messages",
            {"to": [f"client{n}@example.com"], "subject": f"Offer {n}", "html": "<p>Hi</p>", "lane": "bulk"},
        )
        assert reply.status == 202, reply.body
    client, url = boto3.client("sqs"), stack.refs["BulkSendQueue"]
    jobs = []
    while got := client.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        for m in got:
            jobs.extend(sqs.send_bodies(m["Body"]))
            client.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert len(jobs) == count
    return jobs


def status(job: sqs.SendJob) -> str:
    return str(MessageModel.get(ACCOUNT, job.message_id, consistent_read=True).status)


def test_a_bundle_on_the_bulk_queue_is_sent_whole_by_the_send_function(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources
) -> None:
    # GIVEN three emails of a 10/s mailbox queued as one SQS message
    user.post("/v1/mailboxes", mailbox_body(smtp, rate_per_second=10))
    jobs = composed_jobs(user, aws_stack, 3)
    sqs.enqueue_send_bundles([(jobs, 0)])
    # WHEN the send function consumes the bulk queue
    result = deliver(
        load_handler("send"), aws_stack.refs["BulkSendQueue"], aws_stack.attrs[("BulkSendQueue", "Arn")]
    )
    # THEN one record carried the three emails, each sent once
    assert result["delivered"] == 1 and result["batchItemFailures"] == []
    assert sorted(str(m.parsed()["Subject"]) for m in smtp.messages) == ["Offer 0", "Offer 1", "Offer 2"]
    assert [status(job) for job in jobs] == ["sent"] * 3


def test_a_bundle_with_a_failed_job_fails_its_record_and_its_redelivery_repeats_nothing(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailer_core.sending import outcomes

    # GIVEN a bundle of three emails whose second one's "sent" record fails once
    user.post("/v1/mailboxes", mailbox_body(smtp, rate_per_second=10))
    jobs = composed_jobs(user, aws_stack, 3)
    body = sqs.bundle_body(jobs)
    record, failures = outcomes.record_sent, [jobs[1].message_id]

    def failing(message: MessageModel, *args: Any, **kwargs: Any) -> None:
        if message.message_id in failures:
            failures.remove(message.message_id)
            raise RuntimeError("DynamoDB: InternalServerError")
        record(message, *args, **kwargs)

    monkeypatch.setattr(outcomes, "record_sent", failing)
    # WHEN the worker works it (the invocation fails: SQS keeps the record), and SQS delivers
    # the record again once the claim's lease has passed
    clock = FakeClock()
    with pytest.raises(RuntimeError, match="InternalServerError"), SendWorker(clock=clock) as worker:
        worker.process_batch([body])
    clock.advance(outcomes.CLAIM_LEASE.total_seconds() + 1)
    with SendWorker(clock=clock) as worker:
        [again] = worker.process_batch([body])

    # THEN the second delivery sent none of the three again: the two sent stay sent, the one
    # whose record was lost is failed as interrupted (it may have arrived: never sent twice)
    assert not isinstance(again, Exception)
    assert len(smtp.messages) == 3
    assert [status(job) for job in jobs] == ["sent", "failed", "sent"]


def test_a_bundle_record_fails_with_its_first_failed_job(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a bundle of two emails, the first one's job raising
    user.post("/v1/mailboxes", mailbox_body(smtp, rate_per_second=10))
    jobs = composed_jobs(user, aws_stack, 2)
    original = SendWorker.process

    def process(worker: SendWorker, job: sqs.SendJob) -> Any:
        if job.message_id == jobs[0].message_id:
            raise RuntimeError("Kommo answered 503")
        return original(worker, job)

    monkeypatch.setattr(SendWorker, "process", process)
    # WHEN the worker works it
    with SendWorker(clock=FakeClock()) as worker:
        [outcome] = worker.process_batch([sqs.bundle_body(jobs)])
    # THEN the record fails (SQS delivers it again) though its other email went out
    assert isinstance(outcome, RuntimeError) and "503" in str(outcome)
    assert [status(job) for job in jobs] == ["queued", "sent"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('{"jobs": []}', "bundle of 1 to 25"),
        ('{"jobs": "x"}', "bundle of 1 to 25"),
        ('{"jobs": [{"account_id": 1}]}', "not a send job"),
        ("[", "not a send job"),
    ],
)
def test_a_malformed_bundle_fails_its_record_alone(body: str, words: str) -> None:
    with SendWorker(clock=FakeClock()) as worker:
        [outcome] = worker.process_batch([body])
    assert isinstance(outcome, Exception) and words in str(outcome)
