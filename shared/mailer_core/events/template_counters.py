"""Per-template counters, the write side: what became of the emails sent from each template.

One item per template (TemplateStatsModel), every counter an ADD (never read, changed and
written back). The counters count emails (messages), not events:

- `sent`, `failed`, `bounced` (a permanent bounce), `opened` (by a person): each message at
  most once per counter. The guard is the message's `stats_counted` set, added to by a
  conditional write before the counter's ADD (`count_once`), so a repeated event (a
  redelivered "opened", a second failure after a retry, a second bounced recipient) never
  counts twice.
  Sources: the send worker's hooks (hooks.on_message_sent / on_message_failed), the bounce
  poller's hook, and the actions function's "opened" event (a person's first open: the track
  route already makes its two requests, the write and the event).
- `machine_opened`: messages a machine opened. A template's message carries the template id
  in `machine_open_template` from compose; the track route's UpdateItem of a machine open
  REMOVEs it and reads it back (UPDATED_OLD), so only the first machine open sees it and no
  read is needed.
- per link: messages in which a person (`people`) / a machine (`machines`) clicked it; the
  track route counts a message's first click on the link by each (the old per-link counter
  was 0). Links are keyed by the hash the click token carries (of the stored target), as
  top-level attributes (`u_`, `n_`, `p_`, `m_` + key, see the model), so one ADD suffices
  even for the first click. At most MAX_LINKS distinct links per template (a personalised
  URL is a link per recipient): the clicks on the others go to `other_clicks`.

For a first click the track route learns the message's template with one GetItem
(projection: template_id), made only for those first clicks. A failed counter never fails
what it counts: each entry point here logs and returns.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pynamodb.exceptions import DoesNotExist, UpdateError
from pynamodb.expressions.condition import size
from pynamodb.expressions.operand import Path

from mailer_core.base.logs import logger
from mailer_core.store.message_state import is_condition_failure
from mailer_core.store.models import MessageModel, TemplateStatsModel

KINDS = ("sent", "failed", "bounced", "opened")
MAX_LINKS = 100
BOUNCED_PREFIX = "bounced:"  # how bounces.py words the failure it hands to hooks.on_message_failed


# -- emails: counted once per message, with the message's guard -------------------------------


def count_once(message: MessageModel, kind: str, when: datetime) -> bool:
    """Add the message to its template's `kind` counter unless it is there already; True if
    this call counted it. Nothing for a message without a template.

    Two writes, the guard first: `ADD stats_counted :kind` on the message under the condition
    that the set lacks it, then the template's ADD. A repeated event fails the guard; a crash
    between the two loses this one count (never counts twice). Not one TransactWriteItems: the
    writes are off the hot paths, and moto copies a whole table per transaction."""
    if kind not in KINDS:
        raise ValueError(f"unknown counter {kind!r}")
    template_id = message.template_id
    if not template_id:
        return False
    account_id = int(message.account_id)
    try:
        MessageModel._get_connection().update_item(
            str(account_id),
            message.message_id,
            actions=[MessageModel.stats_counted.add({kind})],
            condition=MessageModel.message_id.exists() & ~MessageModel.stats_counted.contains(kind),
            return_values="NONE",
        )
    except UpdateError as exc:
        if is_condition_failure(exc):
            return False  # counted before (or the message is gone)
        raise
    _add(account_id, str(template_id), [Path(kind).add(1)], when)
    return True


def on_sent(message: MessageModel, when: datetime) -> None:
    _logged(lambda: count_once(message, "sent", when), "sent", message.message_id)


def on_failed(message: MessageModel, reason: str, when: datetime) -> None:
    """A failure to send, or a permanent bounce (the bounce poller's reason says so)."""
    kind = "bounced" if reason.startswith(BOUNCED_PREFIX) else "failed"
    _logged(lambda: count_once(message, kind, when), kind, message.message_id)


def on_opened(message: MessageModel, when: datetime) -> None:
    """A person's first open (the actions function's "opened" event, possibly delivered twice)."""
    _logged(lambda: count_once(message, "opened", when), "opened", message.message_id)


# -- the track route: first machine open, first click per link --------------------------------


def on_first_machine_open(account_id: int, template_id: str, message_id: str, when: datetime) -> None:
    """The email's first machine open: its UpdateItem removed `machine_open_template` (set at
    compose) and read it back, so exactly one open gets here, with the template id."""
    _logged(
        lambda: _add(account_id, template_id, [Path("machine_opened").add(1)], when),
        "machine_opened",
        message_id,
    )


def on_first_click(
    account_id: int,
    message_id: str,
    *,
    key: str,
    url: str,
    link_id: int | None,
    machine: bool,
    when: datetime,
    template_id: str | None = None,
) -> None:
    """The message's first click on the link `key` by a person (or a machine). The click's
    own read of the message gives `template_id`; without it the message is read for it."""

    def count() -> None:
        nonlocal template_id
        template_id = template_id or template_of(account_id, message_id)
        if not template_id:
            return
        actions = [
            Path(("m_" if machine else "p_") + key).add(1),
            Path("u_" + key).set(url),
            TemplateStatsModel.link_keys.add({key}),
        ]
        if link_id is not None:
            actions.append(Path("n_" + key).set(int(link_id)))
        room = (
            TemplateStatsModel.link_keys.does_not_exist()
            | TemplateStatsModel.link_keys.contains(key)
            | (size(TemplateStatsModel.link_keys) < MAX_LINKS)
        )
        try:
            _add(account_id, template_id, actions, when, condition=room)
        except UpdateError as exc:
            if not is_condition_failure(exc):
                raise
            other = TemplateStatsModel.other_machines if machine else TemplateStatsModel.other_people
            _add(account_id, template_id, [other.add(1)], when)

    _logged(count, "clicked", message_id)


def template_of(account_id: int, message_id: str) -> str | None:
    try:
        message = MessageModel.get(int(account_id), message_id, attributes_to_get=["template_id"])
    except DoesNotExist:
        return None
    return str(message.template_id) if message.template_id else None


def _add(
    account_id: int, template_id: str, actions: list[Any], when: datetime, condition: Any = None
) -> None:
    TemplateStatsModel._get_connection().update_item(
        str(int(account_id)),
        template_id,
        actions=[*actions, TemplateStatsModel.updated_at.set(when)],
        condition=condition,
        return_values="NONE",
    )


def _logged(count: Callable[[], object], kind: str, message_id: str) -> None:
    try:
        count()
    except Exception:
        logger.exception("template counter not updated", extra={"counter": kind, "message_id": message_id})
