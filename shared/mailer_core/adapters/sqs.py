"""SQS: the only module that sends to the send queues, the actions queue and the Kommo install queue.

A job names a message; the message itself lives in DynamoDB. Single emails use the priority
queue, mass mailings the bulk queue, so a single email never waits behind a mailing.

An SQS message on a send queue holds one job, or a bundle of up to `BUNDLE_MOST` jobs of one
mailbox (`{"jobs": [...]}`, `send_bodies`): a campaign's part bundles what one mailbox sends in
the same second, so a large campaign needs a tenth of the SQS requests or less.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

from mailer_core.adapters import aws
from mailer_core.base.config import get_settings
from mailer_core.base.errors import MalformedRequest

Lane = Literal["priority", "bulk"]
LANES: tuple[Lane, ...] = ("priority", "bulk")
MAX_DELAY_SECONDS = 900  # SQS DelaySeconds maximum
BUNDLE_MOST = 25  # send jobs in one SQS message


@dataclass(frozen=True)
class SendJob:
    account_id: int
    message_id: str
    mailbox_id: str
    lane: Lane = "priority"
    # "leads:123" when the message is about a CRM entity: the worker reads a batch's at once.
    entity: str | None = None
    # The addresses the message goes to (settled at compose): the worker checks a whole batch's
    # against the suppression list in one read before it sends the first.
    recipients: tuple[str, ...] = ()
    # A campaign's email: its campaign (the worker holds it while the campaign is paused) and
    # the S3 key of the CRM data its package read (rendered without reading Kommo again).
    campaign: str | None = None
    snapshot: str | None = None
    # "{reason}@{epoch}" when the job came back from waiting for its mailbox (the send worker):
    # the message already says so, and the same wait again needs no write.
    waiting: str | None = None

    def to_body(self) -> str:
        body = asdict(self)
        for optional in ("entity", "campaign", "snapshot", "waiting"):
            if body[optional] is None:
                del body[optional]
        if body["recipients"]:
            body["recipients"] = list(body["recipients"])
        else:
            del body["recipients"]
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
                recipients=tuple(str(a) for a in data.get("recipients") or ()),
                campaign=str(data["campaign"]) if data.get("campaign") else None,
                snapshot=str(data["snapshot"]) if data.get("snapshot") else None,
                waiting=str(data["waiting"]) if data.get("waiting") else None,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MalformedRequest(f"not a send job: {exc}") from exc


def send_bodies(body: str) -> list[SendJob]:
    """The jobs of one SQS message of a send queue: a single job's body, or a bundle's."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise MalformedRequest(f"not a send job: {exc}") from exc
    if isinstance(data, dict) and "jobs" in data:
        bundled = data["jobs"]
        if not isinstance(bundled, list) or not 0 < len(bundled) <= BUNDLE_MOST:
            raise MalformedRequest(f"not a bundle of 1 to {BUNDLE_MOST} send jobs")
        return [SendJob.from_body_dict(job) for job in bundled]
    return [SendJob.from_body_dict(data)]


def bundle_body(jobs: list[SendJob]) -> str:
    """One SQS body for `jobs` (1 to `BUNDLE_MOST` of one lane): a single job's own body."""
    if not 0 < len(jobs) <= BUNDLE_MOST or len({job.lane for job in jobs}) != 1:
        raise ValueError(f"a bundle holds 1 to {BUNDLE_MOST} send jobs of one lane")
    if len(jobs) == 1:
        return jobs[0].to_body()
    return json.dumps({"jobs": [json.loads(job.to_body()) for job in jobs]}, separators=(",", ":"))


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


def enqueue_pipeline(body: str) -> None:
    """Queue a digital pipeline or Salesbot job (`automatic_send.AutoSendJob`) for the pipeline function."""
    aws.client("sqs").send_message(QueueUrl=get_settings().pipeline_queue_url, MessageBody=body)


def enqueue_campaign(body: str, delay_seconds: int = 0) -> None:
    """Queue a campaign's next step (`events.campaign_jobs.CampaignJob`), optionally after a delay."""
    aws.client("sqs").send_message(
        QueueUrl=get_settings().campaign_queue_url,
        MessageBody=body,
        DelaySeconds=max(0, min(int(delay_seconds), MAX_DELAY_SECONDS)),
    )


def enqueue_bulk_sends(jobs: list[tuple[SendJob, int]]) -> None:
    """Queue send jobs (each with its delay in seconds, at most 15 minutes), ten to a request."""
    enqueue_send_bundles([([job], delay) for job, delay in jobs])


def enqueue_send_bundles(bundles: list[tuple[list[SendJob], int]]) -> None:
    """Queue bundles of send jobs (`bundle_body`), each with its delay in seconds (at most 15
    minutes), ten SQS messages to a request."""
    client = aws.client("sqs")
    for lane in LANES:
        mine = [(jobs, delay) for jobs, delay in bundles if jobs and jobs[0].lane == lane]
        for start in range(0, len(mine), 10):
            entries = [
                {
                    "Id": str(n),
                    "MessageBody": bundle_body(jobs),
                    "DelaySeconds": max(0, min(int(delay), MAX_DELAY_SECONDS)),
                }
                for n, (jobs, delay) in enumerate(mine[start : start + 10])
            ]
            answer = client.send_message_batch(QueueUrl=queue_url(lane), Entries=entries)
            if answer.get("Failed"):
                failed = answer["Failed"][0]
                raise RuntimeError(f"SQS refused a send job: {failed.get('Code')} {failed.get('Message')}")


def enqueue_bounce_polls(bodies: list[str]) -> None:
    """Queue one poll job per mailbox for the bounce function, ten to a request."""
    client = aws.client("sqs")
    url = get_settings().bounce_poll_queue_url
    for start in range(0, len(bodies), 10):
        entries = [{"Id": str(n), "MessageBody": body} for n, body in enumerate(bodies[start : start + 10])]
        answer = client.send_message_batch(QueueUrl=url, Entries=entries)
        if answer.get("Failed"):
            failed = answer["Failed"][0]
            raise RuntimeError(f"SQS refused a bounce poll job: {failed.get('Code')} {failed.get('Message')}")


def enqueue_actions(bodies: list[tuple[str, int]]) -> None:
    """Queue automation work (`events.jobs.EventJob` / `RunJob` bodies, each with its delay in
    seconds, at most 15 minutes) for the actions function, ten to a request."""
    client = aws.client("sqs")
    url = get_settings().actions_queue_url
    for start in range(0, len(bodies), 10):
        chunk = bodies[start : start + 10]
        entries = [
            {"Id": str(n), "MessageBody": body, "DelaySeconds": max(0, min(int(delay), MAX_DELAY_SECONDS))}
            for n, (body, delay) in enumerate(chunk)
        ]
        answer = client.send_message_batch(QueueUrl=url, Entries=entries)
        if answer.get("Failed"):
            failed = answer["Failed"][0]
            raise RuntimeError(f"SQS refused an action job: {failed.get('Code')} {failed.get('Message')}")


def retry_action_later(receipt_handle: str, seconds: int) -> None:
    """Make a failed action job visible again after `seconds` (its backoff), not the queue's default."""
    aws.client("sqs").change_message_visibility(
        QueueUrl=get_settings().actions_queue_url,
        ReceiptHandle=receipt_handle,
        VisibilityTimeout=max(0, min(int(seconds), 43200)),
    )


DEFERRALS_ATTRIBUTE = "deferrals"  # how often a job was put back for its account's sake (events.shares)


def requeue(queue_url: str, body: str, delay_seconds: int, *, deferrals: int) -> None:
    """Put a job back on its queue, unchanged, visible again after `delay_seconds` (at most 15
    minutes), counting the deferral in a message attribute. A new message: its receive count
    starts again, so waiting for an account's turn never moves a job toward the dead letters."""
    aws.client("sqs").send_message(
        QueueUrl=queue_url,
        MessageBody=body,
        DelaySeconds=max(0, min(int(delay_seconds), MAX_DELAY_SECONDS)),
        MessageAttributes={DEFERRALS_ATTRIBUTE: {"DataType": "Number", "StringValue": str(int(deferrals))}},
    )
