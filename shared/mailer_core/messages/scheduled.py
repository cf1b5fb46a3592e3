"""A scheduled message changed or deleted before it is released (docs/letters.md#scheduled).

`PATCH /v1/messages/{id}` changes its subject, HTML, recipients or send time;
`DELETE /v1/messages/{id}` removes it. Both are one conditional write whose condition is that
the message is still `scheduled`: once the timer released it (scheduled → queued) or a worker
claimed it (→ sending), the write fails and the answer is 409 with its status, so an email
is never changed while it is being sent, nor deleted after. The timer and the claim are
conditional writes on the same status, so exactly one of them and the edit wins.

A new HTML body too large to keep inline goes to S3 under a new key, written before the
conditional write: a worker that claimed the message first still reads the body it claimed.
A new send time re-dispatches the message: the old one-time schedule is deleted and a new one
(or an SQS delay) made; a job of the old time that still arrives finds the message not due and
waits again, or finds it sent and does nothing (the claim).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pynamodb.exceptions import DeleteError, UpdateError
from pynamodb.expressions.update import Action

from mailer_core.accounts.auth import Caller
from mailer_core.adapters import s3, scheduler
from mailer_core.base import validation
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.errors import Conflict, InvalidInput
from mailer_core.base.limits import MAX_RECIPIENTS
from mailer_core.messages.compose import MAX_SCHEDULE_AHEAD, dispatch
from mailer_core.messages.queries import load
from mailer_core.messages.requests import body_of
from mailer_core.messages.views import public_view
from mailer_core.rendering.source_checks import validate_source
from mailer_core.store import message_state as state
from mailer_core.store import timeline
from mailer_core.store.conditions import is_condition_failure
from mailer_core.store.models import MessageModel

FIELDS = {"subject", "html", "to", "cc", "bcc", "send_at"}


def _refused(caller: Caller, message_id: str, verb: str) -> Conflict:
    current = load(caller, message_id)
    return Conflict(
        f"only a scheduled message can be {verb}; this one is {current.status}",
        field="status",
        status=current.status,
    )


def edit(caller: Caller, message_id: str, payload: Any, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    message = load(caller, message_id)
    data = validation.require_object(payload)
    validation.reject_unknown(data, FIELDS)
    now = clock.now()
    actions, changed = _changes(message, data, now)
    send_at = validation.timestamp(data, "send_at") if "send_at" in data else None
    if "send_at" in data:
        if send_at is None or send_at <= now:
            raise InvalidInput(
                "must be a time in the future (cancel it, or send a new email, to send now)", field="send_at"
            )
        if send_at - now > MAX_SCHEDULE_AHEAD:
            raise InvalidInput("is more than a year ahead", field="send_at")
        actions.append(MessageModel.send_at.set(send_at))
        changed.append("send time")
    if not actions:  # nothing to change: still only a scheduled message is changeable
        if message.status != state.SCHEDULED:
            raise _refused(caller, message_id, "changed")
        return public_view(message)
    detail = f"{', '.join(changed)} changed by user {caller.user_id}"
    actions += [
        MessageModel.updated_at.set(now),
        timeline.history_append(timeline.entry(now, "edited", detail)),
    ]
    try:
        message.update(actions=actions, condition=MessageModel.status == state.SCHEDULED)
    except UpdateError as exc:
        if is_condition_failure(exc):
            raise _refused(caller, message_id, "changed") from exc
        raise
    if send_at is not None:
        _reschedule(message, clock)
    return public_view(load(caller, message_id))


def _changes(message: MessageModel, data: dict[str, Any], now: datetime) -> tuple[list[Action], list[str]]:
    actions: list[Action] = []
    changed: list[str] = []
    if "subject" in data or "html" in data:
        subject, html = body_of({"subject": data.get("subject", ""), "html": data.get("html", "")})
        if "subject" in data:
            actions.append(MessageModel.subject.set(validate_source(subject, field="subject", html=False)))
            changed.append("subject")
        if "html" in data:
            validate_source(html, field="html", html=True)
            if len(html.encode("utf-8")) <= s3.INLINE_LIMIT:
                actions += [MessageModel.html.set(html), MessageModel.html_s3_key.remove()]
            else:  # a new key: a worker that claimed first reads the body it claimed
                stamp = int(now.timestamp() * 1000)
                key = f"bodies/{int(message.account_id)}/{message.message_id}-{stamp}.html"
                s3.put_text(key, html, "text/html; charset=utf-8")
                actions += [MessageModel.html.remove(), MessageModel.html_s3_key.set(key)]
            changed.append("body")
    for name in ("to", "cc", "bcc"):
        if name in data:
            addresses = validation.email_list(data, name, max_items=MAX_RECIPIENTS)
            if name == "to" and not addresses:
                raise InvalidInput("an email needs at least one recipient", field="to")
            actions.append(getattr(MessageModel, name).set(addresses))
            changed.append(name)
    if (
        len(
            [
                *data.get("to", message.to),
                *data.get("cc", message.cc or []),
                *data.get("bcc", message.bcc or []),
            ]
        )
        > MAX_RECIPIENTS
    ):
        raise InvalidInput(f"an email goes to at most {MAX_RECIPIENTS} addresses", field="to")
    return actions, changed


def _reschedule(message: MessageModel, clock: Clock) -> None:
    """The old schedule deleted, the message dispatched for its new time."""
    if message.schedule_name:
        scheduler.delete(str(message.schedule_name))
    dispatch(message, clock=clock)


def delete(caller: Caller, message_id: str) -> None:
    message = load(caller, message_id)
    try:
        message.delete(condition=MessageModel.status == state.SCHEDULED)
    except DeleteError as exc:
        if is_condition_failure(exc):
            raise _refused(caller, message_id, "deleted") from exc
        raise
    if message.schedule_name:
        scheduler.delete(str(message.schedule_name))
