"""A message's timeline: every step of its life in one list, in order, each with its kind.

The steps are the message's history (MessageModel.history), written by each part as the step
happens: compose (queued, scheduled), the send worker (sending, sent, retrying, waiting for the
mailbox's rate or daily cap, failed with the server's words …), the Sent-folder filing, the
bounce poller (bounced, delayed, complained, delivered, replied), the automation
(each trigger run with its result or Kommo's words, timers) and the track routes (each open and
click, an unsubscribe). `view` sorts them by time and says what kind each one is.

Opens and clicks are appended by the same UpdateItem as their counter (`counted`), so the
track routes make no extra request for them. To keep the item far from DynamoDB's 400 KB, only
the first `CAP` of each kind are listed (people's opens, machines' opens, people's clicks,
machines' clicks): the append is guarded by that kind's counter in the same item
(`opens < CAP`). Past the cap the guard fails and the same update goes again without the entry
(one more request, only then): the counters count every event; the timeline lists the first ones.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pynamodb.attributes import NumberAttribute
from pynamodb.exceptions import UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from mailer_core.store.conditions import is_condition_failure
from mailer_core.store.models import HistoryEntry, MessageModel

CAP = 50  # entries listed per kind of open and click, per message
DETAIL_CHARS = 1000  # an entry's detail (a server's words, Kommo's error) is cut here
OPENED, MACHINE_OPEN, CLICKED, MACHINE_CLICK = "opened", "machine_open", "clicked", "machine_click"
OPTED_OUT = "opted_out"  # the recipient unsubscribed through the email's link (docs/opt-out.md)

_KINDS = {
    "status": (
        "draft",
        "scheduled",
        "queued",
        "sending",
        "sent",
        "retrying",
        "released",
        "waiting",
        "failed",
        "canceled",
        "edited",
    ),
    "delivery": ("skipped", "filed", "not_filed", "bounced", "delayed", "complained", "delivered"),
    "reply": ("replied",),
    "tracking": (OPENED, MACHINE_OPEN, CLICKED, MACHINE_CLICK, OPTED_OUT, "downloaded"),
    "automation": (
        "trigger",
        "trigger_failed",
        "trigger_suppressed",
        "trigger_skipped",
        "trigger_link_missing",
        "timer",
        "not_opened",
    ),
}
KIND_OF = {event: kind for kind, events in _KINDS.items() for event in events}
# Steps that went wrong: the detail holds the server's, the mailbox's or Kommo's words.
FAILURES = frozenset(
    {"failed", "retrying", "bounced", "complained", "not_filed", "trigger_failed", "trigger_link_missing"}
)


def kind_of(event: str) -> str:
    return KIND_OF.get(event, "other")


def view(message: MessageModel) -> list[dict[str, Any]]:
    """The history sorted by time (steps written at the same time keep their order)."""
    entries = sorted(enumerate(message.history or []), key=lambda pair: (pair[1].at, pair[0]))
    return [
        {
            "at": h.at.isoformat(),
            "event": h.event,
            "kind": kind_of(h.event),
            "failure": h.event in FAILURES,
            "detail": h.detail,
        }
        for _, h in entries
    ]


def entry(at: datetime, event: str, detail: str | None = None) -> HistoryEntry:
    """The one way to make a timeline entry: every writer cuts its detail the same way."""
    return HistoryEntry(at=at, event=event, detail=detail[:DETAIL_CHARS] if detail else None)


def history_append(*entries: HistoryEntry) -> Action:
    """The action that appends to a message's history (which may not exist yet)."""
    return MessageModel.history.set((MessageModel.history | []).append(list(entries)))


def note(
    message: MessageModel,
    at: datetime,
    event: str,
    detail: str | None = None,
    *,
    extra: list[Action] | None = None,
) -> bool:
    """Append one entry (and `extra` actions) to a stored message's timeline in one UpdateItem;
    False when the message is gone (nothing is written then)."""
    actions = [history_append(entry(at, event, detail)), *(extra or [])]
    try:
        message.update(actions=actions, condition=MessageModel.message_id.exists())
    except UpdateError as exc:
        if is_condition_failure(exc):
            return False
        raise
    return True


def counted(
    account_id: int,
    message_id: str,
    *,
    actions: list[Action],
    counter: NumberAttribute,
    note: HistoryEntry,
    condition: Condition | None = None,
    values: str = "UPDATED_OLD",
) -> dict[str, Any]:
    """Apply `actions` (which move `counter`) to an existing message and list `note` on its
    timeline while `counter` is below CAP; the attributes asked for by `values`, raw.

    One UpdateItem below the cap; past it, the guard fails and the update goes once more
    without the note. Raises UpdateError when the message (or what `condition` asks) is gone."""
    guard = MessageModel.message_id.exists()
    if condition is not None:
        guard = guard & condition
    listed = [*actions, history_append(note)]
    below_cap = counter.does_not_exist() | (counter < CAP)
    try:
        return _update(account_id, message_id, listed, guard & below_cap, values)
    except UpdateError as exc:
        if not is_condition_failure(exc):
            raise
    return _update(account_id, message_id, actions, guard, values)


def old_element(old: dict[str, Any], name: str, index: int) -> int | None:
    """The number a list element held before an UPDATED_OLD update of `name[index]`.

    DynamoDB answers the updated element alone (a one-element list); moto answers the whole
    list. Both are read here: a one-element list is the element."""
    items = (old.get(name) or {}).get("L") or []
    if len(items) == 1:
        return int(items[0]["N"])
    if index < len(items):
        return int(items[index]["N"])
    return None


def _update(
    account_id: int, message_id: str, actions: list[Action], condition: Condition, values: str
) -> dict[str, Any]:
    reply = MessageModel._get_connection().update_item(
        str(account_id), message_id, actions=actions, condition=condition, return_values=values
    )
    return dict(reply.get("Attributes") or {})
