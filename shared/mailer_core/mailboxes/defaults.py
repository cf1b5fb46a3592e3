"""Each user's default mailbox: while a user has mailboxes, exactly one of them is the default.

A user may have any number of mailboxes; an email composed without a mailbox leaves through
the sender's default one. The rules:

- the first mailbox of a user becomes the default, whatever the request said;
- making a mailbox the default unsets the user's other default in the same DynamoDB
  transaction, that write conditioned on the other still being the default, so two concurrent
  "make this one the default" calls cannot leave two: one transaction fails and is retried
  against what the other wrote;
- the default cannot be unset by itself (422): make another mailbox the default instead;
- deleting the default makes the user's oldest remaining mailbox (the smallest id: ids are
  ULIDs) the default, in the same transaction; deleting the last one leaves none;
- moving a mailbox to another user (an administrator's change of `user_id`) makes it that
  user's default if they had none, else not; if it was the old owner's default, their oldest
  remaining mailbox becomes theirs.

What is left open, on purpose: two *first* mailboxes of one user created at the same moment
can both be marked default (no item exists whose condition could tell them apart). `choose`
then takes the oldest, and the next "make default" of that user leaves exactly one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.expressions.condition import Condition
from pynamodb.transactions import TransactWrite

from mailer_core.base.errors import Conflict, InvalidInput, NotFound
from mailer_core.store.models import MailboxModel

MAX_ATTEMPTS = 4


def user_mailboxes(account_id: int, user_id: int, *, without: str | None = None) -> list[MailboxModel]:
    """The user's mailboxes in id (creation) order, read consistently."""
    found = MailboxModel.query(
        account_id, filter_condition=MailboxModel.user_id == user_id, consistent_read=True
    )
    return [m for m in found if m.mailbox_id != without]


def _flags(
    account_id: int, user_id: int, *, without: str | None = None, defaults_only: bool = False
) -> list[MailboxModel]:
    """The user's mailboxes (or only their default ones) as keys and flags, in id order.

    The transactions below need no more: an account's mailboxes share one partition, so a full
    read of each would carry every mailbox's settings to change one flag.
    """
    condition = MailboxModel.user_id == user_id
    if defaults_only:
        condition &= _flag_is(True)
    found = MailboxModel.query(
        account_id,
        filter_condition=condition,
        consistent_read=True,
        attributes_to_get=["account_id", "mailbox_id", "user_id", "is_default"],
    )
    return [m for m in found if m.mailbox_id != without]


def choose(mailboxes: Iterable[MailboxModel]) -> MailboxModel | None:
    """The default among one user's mailboxes (the oldest if a race left two), else their only one."""
    own = sorted(mailboxes, key=lambda m: m.mailbox_id)
    defaults = [m for m in own if m.is_default]
    if defaults:
        return defaults[0]
    return own[0] if len(own) == 1 else None


def _flag_is(value: bool) -> Condition:
    if value:
        return MailboxModel.is_default == True  # noqa: E712
    return (MailboxModel.is_default == False) | MailboxModel.is_default.does_not_exist()  # noqa: E712


def _transaction() -> TransactWrite:
    return TransactWrite(connection=MailboxModel._get_connection().connection)


def _commit(tx: TransactWrite) -> bool:
    """Commit one transaction; False when DynamoDB canceled it (a condition failed, or a conflict)."""
    try:
        with tx:
            pass  # leaving the block commits what was added to it
    except TransactWriteError as exc:
        if exc.cause_response_code == "TransactionCanceledException":
            return False
        raise
    return True


def _demote(tx: TransactWrite, others: Iterable[MailboxModel], owner: int) -> None:
    for other in others:
        tx.update(
            other,
            actions=[MailboxModel.is_default.set(False)],
            condition=_flag_is(True) & (MailboxModel.user_id == owner),
        )


def _promote(tx: TransactWrite, mailbox: MailboxModel | None, owner: int) -> None:
    if mailbox is not None:
        tx.update(
            mailbox,
            actions=[MailboxModel.is_default.set(True)],
            condition=MailboxModel.mailbox_id.exists() & (MailboxModel.user_id == owner),
        )


def _successor(account_id: int, owner: int, leaving: str) -> MailboxModel | None:
    """The mailbox that becomes `owner`'s default when their default `leaving` goes: the oldest."""
    rest = _flags(account_id, owner, without=leaving)
    return rest[0] if rest and not any(m.is_default for m in rest) else None


def _changed() -> Conflict:
    return Conflict("the user's mailboxes changed meanwhile; try again", field="is_default")


def save_new(mailbox: MailboxModel, *, wants_default: bool | None) -> None:
    """Store a new mailbox, its default flag set by the rules above."""
    owner = int(mailbox.user_id)
    for _ in range(MAX_ATTEMPTS):
        defaults = _flags(int(mailbox.account_id), owner, defaults_only=True)
        mailbox.is_default = bool(wants_default) or not defaults
        tx = _transaction()
        tx.save(mailbox, condition=MailboxModel.mailbox_id.does_not_exist())
        _demote(tx, defaults if mailbox.is_default else [], owner)
        if _commit(tx):
            return
    raise _changed()


def update(
    mailbox: MailboxModel, actions: list[Any], *, wants_default: bool | None, new_owner: int | None
) -> None:
    """Apply a PATCH's `actions` to `mailbox` together with what the default rules demand."""
    account_id = int(mailbox.account_id)
    for attempt in range(MAX_ATTEMPTS):
        if attempt:
            mailbox = _reload(mailbox)
        before = int(mailbox.user_id)
        after = new_owner if new_owner is not None else before
        was_default = bool(mailbox.is_default)
        if after == before and was_default and wants_default is False:
            raise InvalidInput(
                "a user always has one default mailbox: make another mailbox the default instead",
                field="is_default",
            )
        others = _flags(account_id, after, without=mailbox.mailbox_id, defaults_only=True)
        make_default = bool(wants_default) or not others or (after == before and was_default)
        tx = _transaction()
        tx.update(
            mailbox,
            actions=[*actions, MailboxModel.is_default.set(make_default)],
            condition=MailboxModel.mailbox_id.exists()
            & (MailboxModel.user_id == before)
            & _flag_is(was_default),
        )
        _demote(tx, others if make_default else [], after)
        if after != before and was_default:
            _promote(tx, _successor(account_id, before, mailbox.mailbox_id), before)
        if _commit(tx):
            return
    raise _changed()


def delete(mailbox: MailboxModel) -> None:
    """Delete a mailbox; if it was its user's default, their oldest remaining one takes over."""
    account_id = int(mailbox.account_id)
    for attempt in range(MAX_ATTEMPTS):
        if attempt:
            mailbox = _reload(mailbox)
        owner, was_default = int(mailbox.user_id), bool(mailbox.is_default)
        tx = _transaction()
        tx.delete(mailbox, condition=MailboxModel.mailbox_id.exists() & _flag_is(was_default))
        if was_default:
            _promote(tx, _successor(account_id, owner, mailbox.mailbox_id), owner)
        if _commit(tx):
            return
    raise _changed()


def _reload(mailbox: MailboxModel) -> MailboxModel:
    try:
        return MailboxModel.get(mailbox.account_id, mailbox.mailbox_id, consistent_read=True)
    except DoesNotExist:
        raise NotFound("no such mailbox", field="mailbox_id") from None
