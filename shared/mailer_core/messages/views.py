"""A message as the API shows it: its record, counters, timeline, attachments and delivery
reports, and its body when asked."""

from __future__ import annotations

from typing import Any

from mailer_core.files import attachments
from mailer_core.store import message_state as state
from mailer_core.store import timeline
from mailer_core.store.models import MessageModel, event_triggers
from mailer_core.tracking import counters_view as tracking


def waiting_view(message: MessageModel) -> dict[str, Any] | None:
    """Why a queued email is held back and when it is tried next (the send worker noted it when
    its mailbox's rate, daily cap or a provider's hold sent its job back to the queue)."""
    if message.status not in (state.QUEUED, state.SCHEDULED) or not message.waiting_reason:
        return None
    reason = str(message.waiting_reason)
    return {
        "reason": reason,
        "detail": state.WAITING_WORDS.get(reason, reason),
        "next_try_at": message.waiting_until.isoformat() if message.waiting_until else None,
    }


def public_view(message: MessageModel, *, with_body: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": message.message_id,
        "status": message.status,
        "user_id": int(message.user_id),
        "mailbox_id": message.mailbox_id,
        "lane": message.lane,
        "to": list(message.to),
        "cc": list(message.cc or []),
        "bcc": list(message.bcc or []),
        "entity": (
            {"type": message.entity_type, "id": int(message.entity_id)}
            if message.entity_type and message.entity_id is not None
            else None
        ),
        "subject": message.subject,
        "sent_subject": message.sent_subject,  # as rendered and sent (a template's variables filled)
        "template_id": message.template_id,
        "message_id_header": message.header_message_id,
        "send_at": message.send_at.isoformat() if message.send_at else None,
        "attempts": int(message.attempts or 0),
        "last_error": message.last_error,
        "waiting": waiting_view(message),
        "created_at": message.created_at.isoformat(),
        "updated_at": message.updated_at.isoformat(),
        "sent_at": message.sent_at.isoformat() if message.sent_at else None,
        "attachments": [attachments.AttachedFile.from_attribute(a).view() for a in message.attachments or []],
        "attachment_links": list(message.attachment_links or []),
        "history": [
            {"at": h.at.isoformat(), "event": h.event, "detail": h.detail} for h in (message.history or [])
        ],
        "timeline": timeline.view(message),  # the history in time order, with each step's kind
        "bounces": [  # delivery reports read back from the mailbox (mailer_core.bounces.reports)
            {**b.as_dict(), "at": b.at.isoformat()} for b in (message.bounces or [])
        ],
        "track_opens": message.track_opens is not False,
        "origin": message.origin or "manual",
        "triggers": event_triggers(message.triggers),
        "not_opened_after": int(message.not_opened_after) if message.not_opened_after else None,
        "parent_message_id": message.parent_message_id,
        **tracking.counters_view(message),  # opens (people, machines), first_open_at, clicks per link
        "replies": int(message.replies or 0),  # answers read from the inbox (mailer_core.bounces.replies)
        "first_reply_at": message.first_reply_at.isoformat() if message.first_reply_at else None,
        # its recipient unsubscribed through its link (docs/opt-out.md)
        "opted_out_at": message.opted_out_at.isoformat() if message.opted_out_at else None,
    }
    if with_body:
        view["html"] = message.html if message.html is not None else None
    return view
