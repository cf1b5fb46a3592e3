"""Message statuses, their allowed transitions and the history every change leaves.

Every transition is one conditional UpdateItem: the condition names the statuses it may
leave, so two workers (or a worker and a user's cancel) can never both win.
"""

from __future__ import annotations

from datetime import datetime

from pynamodb.constants import NONE
from pynamodb.exceptions import UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from mailer_core.store import timeline
from mailer_core.store.conditions import is_condition_failure
from mailer_core.store.models import MessageModel

DRAFT, SCHEDULED, QUEUED, SENDING, SENT, FAILED, CANCELED, HELD = (
    "draft",
    "scheduled",
    "queued",
    "sending",
    "sent",
    "failed",
    "canceled",
    "held",  # a campaign's email kept back while its campaign is paused or interrupted
)
STATUSES = (DRAFT, SCHEDULED, QUEUED, SENDING, SENT, FAILED, CANCELED, HELD)
FINAL = (SENT, FAILED, CANCELED)

# Why a queued message waits (`MessageModel.waiting_reason`, noted by the send worker), in words.
WAITING_WORDS = {
    "rate": "waiting for its turn at the mailbox's sending rate",
    "daily_cap": "the mailbox's daily cap is reached; it goes out after midnight UTC",
    "held": "the mailbox's provider asked to slow down; waiting until it allows again",
    "priority": "waiting while the mailbox sends a manager's email first",
    "kommo": "waiting for the account's Kommo request budget (Kommo takes 7 requests a second)",
}


def status_key(account_id: int, status: str) -> str:
    return f"{account_id}#{status}"


def set_status(message: MessageModel, status: str) -> list[Action]:
    return [
        MessageModel.status.set(status),
        MessageModel.status_key.set(status_key(int(message.account_id), status)),
    ]


def in_status(*statuses: str) -> Condition:
    return MessageModel.status.is_in(*statuses)


def transition(
    message: MessageModel,
    *,
    to: str,
    when: datetime,
    event: str,
    detail: str | None = None,
    allowed_from: tuple[str, ...],
    extra: list[Action] | None = None,
    condition: Condition | None = None,
    refresh: bool = True,
) -> bool:
    """Move the message to `to` if it is in one of `allowed_from`; False if it was not.

    With `refresh` the item comes back (ReturnValues ALL_NEW) and `message` is updated from it;
    without, nothing comes back and `message` keeps the values it had (a smaller answer to
    read, where the caller needs none of it).
    """
    guard = in_status(*allowed_from)
    if condition is not None:
        guard = guard & condition
    actions: list[Action] = [
        *set_status(message, to),
        MessageModel.updated_at.set(when),
        timeline.history_append(timeline.entry(when, event, detail)),
        *(extra or []),
    ]
    try:
        if refresh:
            message.update(actions=actions, condition=guard)
        else:
            hash_key, range_key = message._get_hash_range_key_serialized_values()
            message._get_connection().update_item(
                hash_key, range_key=range_key, actions=actions, condition=guard, return_values=NONE
            )
    except UpdateError as exc:
        if is_condition_failure(exc):
            return False
        raise
    return True
