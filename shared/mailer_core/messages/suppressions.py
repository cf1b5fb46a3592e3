"""The account's suppression list: addresses Mailer does not write to, each with its history.

A delivery report whose reason says the address is gone (user or host unknown, moved, does
not accept mail) or a complaint suppresses the address at once; a full mailbox only when it
repeats: `REPEATS` reports within `REPEAT_WINDOW` (an address is "watching" until then). Which
reason decides what is `mailer_core.bounces.classify`'s; this module keeps the list. Every
report is counted once (its key), the last report's words are kept, and each report,
suppression and lift is a line of the row's history, so a wrong suppression can be seen and
undone. An administrator's lift is logged with who and when; later reports count afresh.

The send worker looks up a message's recipients here (one BatchGetItem) before every send
and leaves the suppressed ones out. Every user of the account may list the suppressions (a
manager needs to know why an email skipped an address); only an administrator may lift one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pynamodb.attributes import UnicodeAttribute
from pynamodb.exceptions import UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.errors import Forbidden, InvalidInput, NotFound
from mailer_core.store.conditions import is_condition_failure
from mailer_core.store.models import SuppressionEvent, SuppressionModel
from mailer_core.store.pages import decode_cursor, encode_cursor

if TYPE_CHECKING:
    from mailer_core.accounts.auth import Caller  # a type only: the send worker needs no JWT library

REPEATS = 3
REPEAT_WINDOW = timedelta(days=7)
HISTORY_KEPT = 50
WORDS_KEPT = 1000
STATES = ("suppressed", "watching", "lifted")
Decision = Literal["suppress", "on_repeat"]


@dataclass(frozen=True)
class Report:
    """A report about one address, as the suppression list counts it."""

    key: str  # the same report read twice has the same key
    reason: str
    decision: Decision
    at: datetime
    status: str | None = None
    words: str | None = None
    message_id: str | None = None
    mailbox_id: str | None = None


def normalize(address: str) -> str:
    return address.strip().lower()


def state_of(item: SuppressionModel) -> str:
    return item.state or "suppressed"


def public_view(item: SuppressionModel, *, history: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "address": item.address,
        "state": state_of(item),
        "reason": item.reason,
        "status": item.status,
        "diagnostic": item.diagnostic,
        "message_id": item.message_id,
        "mailbox_id": item.mailbox_id,
        "reports": int(item.report_count or 1),
        "created_at": item.created_at.isoformat(),
        "last_report_at": (item.last_at or item.created_at).isoformat(),
        "suppressed_at": item.suppressed_at.isoformat() if item.suppressed_at else None,
        "lifted_at": item.lifted_at.isoformat() if item.lifted_at else None,
        "lifted_by": int(item.lifted_by) if item.lifted_by is not None else None,
    }
    if history:
        view["history"] = [_event_view(event) for event in item.events or []]
    return view


def _event_view(event: SuppressionEvent) -> dict[str, Any]:
    return {
        "at": event.at.isoformat(),
        "what": event.what,
        "reason": event.reason,
        "status": event.status,
        "words": event.words,
        "message_id": event.message_id,
        "user_id": int(event.user_id) if event.user_id is not None else None,
    }


# -- reports ---------------------------------------------------------------------------------


def record(account_id: int, address: str, report: Report) -> bool:
    """Count a report against the address; True when the address is suppressed after it."""
    item = _count(account_id, normalize(address), report)
    if state_of(item) != "suppressed" and _should_suppress(item, report):
        _suppress(item, report)
        return True
    return state_of(item) == "suppressed"


def _count(account_id: int, address: str, report: Report) -> SuppressionModel:
    """Add the report to the row (created if new), once per report key; the row as it is now."""
    item = SuppressionModel(account_id, address)
    event = _event("reported", report)
    actions: list[Action] = [
        SuppressionModel.reason.set(SuppressionModel.reason | report.reason),
        SuppressionModel.state.set(SuppressionModel.state | "watching"),  # until _suppress, if ever
        SuppressionModel.created_at.set(SuppressionModel.created_at | report.at),
        SuppressionModel.last_at.set(report.at),
        SuppressionModel.report_count.set((SuppressionModel.report_count | 0) + 1),
        _set_or_remove(SuppressionModel.status, report.status),
        _set_or_remove(SuppressionModel.diagnostic, (report.words or "")[:WORDS_KEPT] or None),
        _set_or_remove(SuppressionModel.message_id, report.message_id),
        _set_or_remove(SuppressionModel.mailbox_id, report.mailbox_id),
        SuppressionModel.report_keys.add({report.key}),
        SuppressionModel.events.set((SuppressionModel.events | []).append([event])),
    ]
    if report.decision == "on_repeat":
        repeat = report.at.isoformat()
        actions.append(SuppressionModel.repeats.set((SuppressionModel.repeats | []).append([repeat])))
    try:
        item.update(actions=actions, condition=~SuppressionModel.report_keys.contains(report.key))
    except UpdateError as error:
        if not is_condition_failure(error):
            raise
        item.refresh(consistent_read=True)  # counted before: settle the state again, idempotently
    _trim(item)
    return item


def _set_or_remove(attribute: UnicodeAttribute, value: str | None) -> Action:
    return attribute.set(value) if value is not None else attribute.remove()


def _should_suppress(item: SuppressionModel, report: Report) -> bool:
    if report.decision == "suppress":
        return True
    since = report.at - REPEAT_WINDOW
    if item.lifted_at is not None and item.lifted_at > since:
        since = item.lifted_at  # after a lift, reports count afresh
    times = [datetime.fromisoformat(str(at)) for at in item.repeats or []]
    return sum(1 for at in times if at > since or at == report.at) >= REPEATS


def _suppress(item: SuppressionModel, report: Report) -> None:
    """Suppress the row once: a second caller (a redelivery) finds it done and changes nothing."""
    try:
        item.update(
            actions=[
                SuppressionModel.state.set("suppressed"),
                SuppressionModel.suppressed_at.set(report.at),
                SuppressionModel.reason.set(report.reason),
                SuppressionModel.events.set(
                    (SuppressionModel.events | []).append([_event("suppressed", report)])
                ),
            ],
            condition=SuppressionModel.state.does_not_exist() | (SuppressionModel.state != "suppressed"),
        )
    except UpdateError as error:
        if not is_condition_failure(error):
            raise


def _event(what: str, report: Report) -> SuppressionEvent:
    return SuppressionEvent(
        at=report.at,
        what=what,
        reason=report.reason,
        status=report.status,
        words=(report.words or "")[:WORDS_KEPT] or None,
        message_id=report.message_id,
    )


def _trim(item: SuppressionModel) -> None:
    """Keep the last `HISTORY_KEPT` lines of history (and the repeats that can still count)."""
    events = item.events or []
    if len(events) <= HISTORY_KEPT + 10:
        return
    drop = len(events) - HISTORY_KEPT
    try:
        item.update(
            actions=[SuppressionModel.events[i].remove() for i in range(drop)],
            condition=SuppressionModel.events[len(events) - 1].exists(),
        )
    except UpdateError as error:
        if not is_condition_failure(error):
            raise


# -- the send worker -------------------------------------------------------------------------


def suppressed(account_id: int, addresses: Iterable[str]) -> dict[str, SuppressionModel]:
    """The suppressed ones among `addresses` (lower case -> item), in one BatchGetItem."""
    wanted = sorted({normalize(a) for a in addresses if a.strip()})
    if not wanted:
        return {}
    found = SuppressionModel.batch_get([(account_id, address) for address in wanted], consistent_read=True)
    return {item.address: item for item in found if state_of(item) == "suppressed"}


# -- the API ---------------------------------------------------------------------------------


def list_for(
    caller: Caller,
    *,
    limit: int = 50,
    cursor: str | None = None,
    reason: str | None = None,
    state: str | None = "suppressed",
) -> dict[str, Any]:
    """The account's suppressions in address order, a page at a time, filtered by reason and state.

    The filters apply to each page as read, so a page may hold fewer than `limit` items while
    `next_cursor` says more may follow.
    """
    last_key = (
        decode_cursor(
            cursor,
            keys=("account_id", "address"),
            types={"account_id": "N", "address": "S"},
            fixed={"account_id": {"N": str(caller.account_id)}},  # never another account's
        )
        if cursor
        else None
    )
    if state not in (*STATES, "all", None):
        raise InvalidInput(f"state must be one of {', '.join((*STATES, 'all'))}", field="state")
    if reason is not None and not reason.replace("_", "").isalpha():
        raise InvalidInput("reason must be a reason's name, e.g. user_unknown", field="reason")
    results = SuppressionModel.query(
        caller.account_id, limit=limit, last_evaluated_key=last_key, filter_condition=_filter(reason, state)
    )
    items = [public_view(item) for item in results]
    next_key = results.last_evaluated_key
    return {"items": items, "next_cursor": encode_cursor(next_key) if next_key else None}


def _filter(reason: str | None, state: str | None) -> Condition | None:
    conditions: list[Condition] = []
    if reason:
        conditions.append(SuppressionModel.reason == reason)
    if state == "suppressed":
        conditions.append(SuppressionModel.state.does_not_exist() | (SuppressionModel.state == "suppressed"))
    elif state in ("watching", "lifted"):
        conditions.append(SuppressionModel.state == state)
    combined: Condition | None = None
    for condition in conditions:
        combined = condition if combined is None else combined & condition
    return combined


def get_for(caller: Caller, address: str) -> dict[str, Any]:
    """One address's row with its history, whatever its state."""
    try:
        item = SuppressionModel.get(caller.account_id, _valid(address), consistent_read=True)
    except SuppressionModel.DoesNotExist:
        raise NotFound("this address is not on the suppression list", field="address") from None
    return public_view(item, history=True)


def lift(caller: Caller, address: str, *, clock: Clock = SYSTEM_CLOCK) -> None:
    """An administrator takes an address off the list: Mailer may write to it again; logged."""
    if not caller.is_admin:
        raise Forbidden("only an administrator may lift a suppression", field="address", reason="admin_only")
    item = SuppressionModel(caller.account_id, _valid(address))
    now = clock.now()
    event = SuppressionEvent(at=now, what="lifted", user_id=caller.user_id)
    try:
        item.update(
            actions=[
                SuppressionModel.state.set("lifted"),
                SuppressionModel.lifted_at.set(now),
                SuppressionModel.lifted_by.set(caller.user_id),
                SuppressionModel.events.set((SuppressionModel.events | []).append([event])),
            ],
            condition=SuppressionModel.address.exists()
            & (SuppressionModel.state.does_not_exist() | (SuppressionModel.state == "suppressed")),
        )
    except UpdateError as error:
        if is_condition_failure(error):
            raise NotFound("this address is not suppressed", field="address") from None
        raise


def _valid(address: str) -> str:
    normalized = normalize(address)
    if not normalized or "@" not in normalized or len(normalized) > 320:
        raise InvalidInput(f"{address!r} is not an email address", field="address")
    return normalized
