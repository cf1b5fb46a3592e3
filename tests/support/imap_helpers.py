"""Compose and send through the real send worker, for the mailbox tests."""

from __future__ import annotations

from typing import Any

import boto3
from mailer_core.adapters import sqs
from mailer_core.base.clock import FakeClock
from mailer_core.sending.worker import SendWorker
from mailer_core.store.models import MailboxModel, MessageModel

from devstack.resources import StackResources
from tests.support.api_client import ApiClient
from tests.support.fixtures.imap import ACCOUNT


def compose(user: ApiClient, **body: Any) -> str:
    reply = user.post(
        "/v1/messages",
        {
            "to": ["client@example.com"],
            "subject": "Коммерческое предложение",
            "html": "<p>Добрый день!</p>",
            **body,
        },
    )
    assert reply.status == 202, reply.body
    return str(reply.json()["id"])


def take_jobs(stack: StackResources, queue: str = "SendQueue") -> list[sqs.SendJob]:
    sqs_client = boto3.client("sqs")
    url = stack.refs[queue]
    jobs = []
    while got := sqs_client.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        for m in got:
            jobs.append(sqs.SendJob.from_body(m["Body"]))
            sqs_client.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return jobs


def send_queued(stack: StackResources, worker: SendWorker | None = None) -> list[str]:
    """Run every queued job through one send worker (one batch); its outcomes."""
    jobs = take_jobs(stack)
    with worker or SendWorker(clock=FakeClock()) as running:
        return [running.process(job) for job in jobs]


def message(message_id: str) -> MessageModel:
    return MessageModel.get(ACCOUNT, message_id, consistent_read=True)


def mailbox(mailbox_id: str) -> MailboxModel:
    return MailboxModel.get(ACCOUNT, mailbox_id, consistent_read=True)


def events(message_id: str) -> list[str]:
    return [h.event for h in message(message_id).history or []]
