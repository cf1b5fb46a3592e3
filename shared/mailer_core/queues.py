"""SQS: the only module that sends to the send queues (and to the Kommo install queue).

A job names a message; the message itself lives in DynamoDB. Single emails use the priority
queue, mass mailings the bulk queue, so a single email never waits behind a mailing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

from mailer_core import aws
from mailer_core.errors import MalformedRequest
from mailer_core.settings import get_settings

Lane = Literal["priority", "bulk"]
LANES: tuple[Lane, ...] = ("priority", "bulk")
MAX_DELAY_SECONDS = 900  # SQS DelaySeconds maximum


@dataclass(frozen=True)
class SendJob:
    account_id: int
    message_id: str
    mailbox_id: str
    lane: Lane = "priority"
    # "leads:123" when the message is about a CRM entity: the worker reads a batch's at once.
    entity: str | None = None

    def to_body(self) -> str:
        body = asdict(self)
        if body["entity"] is None:
            del body["entity"]
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_body(cls, body: str) -> SendJob:
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise MalformedRequest(f"not a send job: {exc}") from exc
        return cls.from_body_dict(data)

    @classmethod
    def from_body_dict(cls, data: Any) -> SendJob:
        try:
            lane = data.get("lane", "priority")
            if lane not in LANES:
                raise ValueError(lane)
            return cls(
                account_id=int(data["account_id"]),
                message_id=str(data["message_id"]),
                mailbox_id=str(data["mailbox_id"]),
                lane=lane,
                entity=str(data["entity"]) if data.get("entity") else None,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MalformedRequest(f"not a send job: {exc}") from exc


def queue_url(lane: Lane) -> str:
    settings = get_settings()
    return settings.bulk_queue_url if lane == "bulk" else settings.send_queue_url


def enqueue_send(job: SendJob, delay_seconds: int = 0) -> None:
    """Queue a message for the send worker, optionally invisible for up to 15 minutes."""
    delay = max(0, min(int(delay_seconds), MAX_DELAY_SECONDS))
    aws.client("sqs").send_message(
        QueueUrl=queue_url(job.lane), MessageBody=job.to_body(), DelaySeconds=delay
    )


def enqueue_kommo_auth(body: str) -> None:
    """Queue the exchange of a Kommo install's authorization code (see `kommo_oauth.InstallJob`)."""
    aws.client("sqs").send_message(QueueUrl=get_settings().kommo_auth_queue_url, MessageBody=body)
