"""timeline.note: the one way a part that changes nothing else writes into a message's timeline."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mailer_core.store import message_state as state
from mailer_core.store import timeline
from mailer_core.store.models import MessageModel
from pynamodb.exceptions import DoesNotExist

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _stored(message_id: str) -> MessageModel:
    message = MessageModel(
        7001,
        message_id,
        status=state.SENT,
        status_key=state.status_key(7001, state.SENT),
        user_id=1,
        mailbox_id="mbx",
        to=["a@example.com"],
        subject="Offer",
        header_message_id=f"<{message_id}@example.com>",
        created_at=T0,
        updated_at=T0,
        history=[timeline.entry(T0, "sent")],
    )
    message.save()
    return message


def test_a_note_is_appended_with_its_extra_actions(aws_stack: Any) -> None:
    message = _stored("01NOTE000000000000000000AA")

    written = timeline.note(message, T0, "not_filed", "x" * 5000, extra=[MessageModel.updated_at.set(T0)])

    stored = MessageModel.get(7001, message.message_id)
    assert written is True
    assert [h.event for h in stored.history] == ["sent", "not_filed"]
    assert len(stored.history[-1].detail) == timeline.DETAIL_CHARS


def test_a_note_for_a_message_that_is_gone_writes_nothing(aws_stack: Any) -> None:
    message = _stored("01NOTE000000000000000000AB")
    message.delete()

    assert timeline.note(message, T0, "trigger_failed", "Kommo said no") is False
    try:
        MessageModel.get(7001, message.message_id)
    except DoesNotExist:
        return
    raise AssertionError("the note created the message again")
