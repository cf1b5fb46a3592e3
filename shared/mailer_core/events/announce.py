"""Announcing a message's events on the actions queue: one SQS message, no reads.

The place that sees an event (the send worker, the track route, the bounce poller, a timer)
only announces it here; the actions function (`mailer_core.automation.runner`) consumes it. So the
pixel and click routes never wait for Kommo, and nothing below the automation imports it.
"""

from __future__ import annotations

from datetime import datetime

from mailer_core.adapters import sqs
from mailer_core.events.jobs import EventJob
from mailer_core.store.models import MessageModel, event_triggers


def chosen(message: MessageModel, event: str) -> list[str]:
    return event_triggers(message.triggers).get(event, [])


def wants_not_opened_timer(message: MessageModel) -> bool:
    return bool(message.not_opened_after) and bool(chosen(message, "not_opened"))


def announce(account_id: int, message_id: str, event: str, when: datetime, *, delay_seconds: int = 0) -> None:
    job = EventJob(int(account_id), message_id, event, when.isoformat(), source=event)
    sqs.enqueue_actions([(job.to_body(), delay_seconds)])


def announce_sent(message: MessageModel, when: datetime) -> None:
    """After the "sent" record: only a message with "sent" triggers or a not-opened timer costs a request."""
    if chosen(message, "sent") or wants_not_opened_timer(message):
        announce(int(message.account_id), message.message_id, "sent", when)


def announce_failed(message: MessageModel, when: datetime) -> None:
    if chosen(message, "failed"):
        announce(int(message.account_id), message.message_id, "failed", when)


def announce_replied(message: MessageModel, when: datetime) -> None:
    """A reply runs the "replied" triggers and stops the not-opened timer: it costs a request only then."""
    if chosen(message, "replied") or wants_not_opened_timer(message):
        announce(int(message.account_id), message.message_id, "replied", when)


def announce_link(
    account_id: int,
    message_id: str,
    link_id: int,
    trigger_ids: list[str],
    when: datetime,
    *,
    click_id: str | None,
) -> None:
    """A person clicked trigger link N: run its triggers (`click_id` None: a one-time link's
    single run for this message; otherwise each click runs them)."""
    source = f"link{int(link_id)}" + (f".{click_id}" if click_id else "")
    job = EventJob(
        int(account_id), message_id, "link", when.isoformat(), source=source, trigger_ids=tuple(trigger_ids)
    )
    sqs.enqueue_actions([(job.to_body(), 0)])


def announce_download(account_id: int, message_id: str, index: int, when: datetime) -> None:
    """A person downloaded attachment `index` for the first time: the "downloaded" triggers run
    once per file (the source names it, so each file's runs have their own ids)."""
    job = EventJob(
        int(account_id), message_id, "downloaded", when.isoformat(), source=f"download{int(index)}"
    )
    sqs.enqueue_actions([(job.to_body(), 0)])
