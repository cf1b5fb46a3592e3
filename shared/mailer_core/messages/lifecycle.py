"""A message's life after compose: canceled (by its user, or when the account is switched
off), sent again after a failure."""

from __future__ import annotations

from typing import Any

from mailer_core.accounts.auth import Caller
from mailer_core.adapters import scheduler
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.errors import (
    Conflict,
)
from mailer_core.messages.compose import dispatch
from mailer_core.messages.queries import load
from mailer_core.messages.views import public_view
from mailer_core.store import message_state as state
from mailer_core.store.models import MessageModel


def cancel(caller: Caller, message_id: str, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    message = load(caller, message_id)
    if not cancel_stored(message, detail=f"by user {caller.user_id}", clock=clock):
        current = load(caller, message_id)
        raise Conflict(
            f"a {current.status} message cannot be canceled", field="status", status=current.status
        )
    return public_view(load(caller, message_id))


def cancel_stored(message: MessageModel, *, detail: str, clock: Clock, error: str | None = None) -> bool:
    """Cancel a queued or scheduled message (one conditional write) and delete its schedule.

    False when it was in no such status (sending, sent, canceled …): nothing changed. `error`
    is kept as the message's last error (a cancel Mailer made, not the user).
    """
    ok = state.transition(
        message,
        to=state.CANCELED,
        when=clock.now(),
        event="canceled",
        detail=detail,
        allowed_from=(state.QUEUED, state.SCHEDULED),
        extra=[MessageModel.last_error.set(error)] if error else None,
    )
    if ok and message.schedule_name:
        scheduler.delete(message.schedule_name)
    return ok


def resend(caller: Caller, message_id: str, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """Send a failed message again: back to queued with a fresh attempt count."""
    message = load(caller, message_id)
    ok = state.transition(
        message,
        to=state.QUEUED,
        when=clock.now(),
        event="queued",
        detail=f"sent again by user {caller.user_id}",
        allowed_from=(state.FAILED,),
        extra=[MessageModel.attempts.set(0), MessageModel.last_error.remove(), MessageModel.send_at.remove()],
    )
    if not ok:
        current = load(caller, message_id)
        raise Conflict(
            f"only a failed message can be sent again; this one is {current.status}",
            field="status",
            status=current.status,
        )
    message.send_at = None
    dispatch(message, clock=clock)
    return public_view(load(caller, message_id))
