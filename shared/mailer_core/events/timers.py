"""What a due one-time schedule does: release a scheduled message to the send queue, announce
that a message was not opened in time, queue a delayed trigger run or a campaign's start.

The scheduler may deliver the same event more than once and may fire after a cancel: the
conditional transition scheduled -> queued, the actions function's check that the message is
still unopened, and the run's claim make each of them harmless.
"""

from __future__ import annotations

from typing import Any, Literal

from pynamodb.exceptions import DoesNotExist

from mailer_core.adapters import sqs
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.errors import MalformedRequest
from mailer_core.base.logs import logger
from mailer_core.events import announce, jobs
from mailer_core.store import message_state as state
from mailer_core.store.models import MessageModel

Result = Literal["queued", "ignored"]


def fire(payload: Any, *, clock: Clock = SYSTEM_CLOCK) -> Result:
    kind = payload.get("kind") if isinstance(payload, dict) else None
    if kind == "not_opened":
        return _not_opened(payload, clock)
    if kind == "run":
        run = jobs.parse_job(payload)
        sqs.enqueue_actions([(run.to_body(), 0)])
        return "queued"
    if kind == "campaign":  # a campaign's start time came: its step goes to the campaign queue
        if not isinstance(payload.get("job"), str):
            raise MalformedRequest(f"not a campaign timer: {payload!r}"[:200])
        sqs.enqueue_campaign(payload["job"])
        return "queued"
    if kind != "send":
        raise MalformedRequest(f"unknown timer payload: {payload!r}"[:200])
    job = sqs.SendJob.from_body_dict(payload)
    logger.append_keys(account_id=job.account_id, message_id=job.message_id)
    try:
        message = MessageModel.get(job.account_id, job.message_id, consistent_read=True)
    except DoesNotExist:
        logger.warning("timer for a message that does not exist")
        return "ignored"
    released = state.transition(
        message,
        to=state.QUEUED,
        when=clock.now(),
        event="queued",
        detail="send time reached",
        allowed_from=(state.SCHEDULED,),
    )
    if not released:
        logger.info("timer ignored", extra={"status": message.status})
        return "ignored"
    sqs.enqueue_send(job)
    return "queued"


def _not_opened(payload: dict[str, Any], clock: Clock) -> Result:
    """The not-opened wait is over: the actions function checks the open and runs the triggers."""

    try:
        account_id, message_id = int(payload["account_id"]), str(payload["message_id"])
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedRequest(f"not a not-opened timer: {exc}") from exc
    announce.announce(account_id, message_id, "not_opened", clock.now())
    return "queued"
