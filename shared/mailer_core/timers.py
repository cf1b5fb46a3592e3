"""What a due one-time schedule does. For now: release a scheduled message to the queue.

The scheduler may deliver the same event more than once and may fire after a cancel: the
conditional transition scheduled -> queued makes both harmless.
"""

from __future__ import annotations

from typing import Any, Literal

from pynamodb.exceptions import DoesNotExist

from mailer_core import message_state as state
from mailer_core import queues
from mailer_core.clock import SYSTEM_CLOCK, Clock
from mailer_core.errors import MalformedRequest
from mailer_core.logs import logger
from mailer_core.models import MessageModel

Result = Literal["queued", "ignored"]


def fire(payload: Any, *, clock: Clock = SYSTEM_CLOCK) -> Result:
    if not isinstance(payload, dict) or payload.get("kind") != "send":
        raise MalformedRequest(f"unknown timer payload: {payload!r}"[:200])
    job = queues.SendJob.from_body_dict(payload)
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
    queues.enqueue_send(job)
    return "queued"
