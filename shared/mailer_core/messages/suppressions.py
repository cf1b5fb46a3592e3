"""The account's suppression list: addresses Mailer never writes to again.

An address lands here when a delivery report says it failed for good (5.x.x); it stays until
an administrator lifts it. The send worker looks up a message's recipients here (one
BatchGetItem) before every send and leaves the suppressed ones out.

Who sees what: every user of the account may list the suppressions (a manager needs to know
why an email skipped an address, and the addresses are the account's own contacts); only an
administrator may lift one.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pynamodb.exceptions import DeleteError, PutError

from mailer_core.base.errors import Forbidden, InvalidInput, MalformedRequest, NotFound
from mailer_core.store.conditions import is_condition_failure
from mailer_core.store.models import SuppressionModel
from mailer_core.store.pages import NOT_OURS, decode_cursor, encode_cursor

if TYPE_CHECKING:
    from mailer_core.accounts.auth import Caller  # a type only: the send worker needs no JWT library


def normalize(address: str) -> str:
    return address.strip().lower()


def public_view(item: SuppressionModel) -> dict[str, Any]:
    return {
        "address": item.address,
        "reason": item.reason,
        "status": item.status,
        "diagnostic": item.diagnostic,
        "message_id": item.message_id,
        "mailbox_id": item.mailbox_id,
        "created_at": item.created_at.isoformat(),
    }


def add(
    account_id: int,
    address: str,
    *,
    reason: str,
    when: datetime,
    status: str | None = None,
    diagnostic: str | None = None,
    message_id: str | None = None,
    mailbox_id: str | None = None,
) -> bool:
    """Suppress the address; False when it already was (the first reason is kept)."""
    item = SuppressionModel(
        account_id,
        normalize(address),
        reason=reason,
        status=status,
        diagnostic=(diagnostic or "")[:1000] or None,
        message_id=message_id,
        mailbox_id=mailbox_id,
        created_at=when,
    )
    try:
        item.save(condition=SuppressionModel.address.does_not_exist())
    except PutError as error:
        if is_condition_failure(error):
            return False
        raise
    return True


def suppressed(account_id: int, addresses: Iterable[str]) -> dict[str, SuppressionModel]:
    """The suppressed ones among `addresses` (lower case -> item), in one BatchGetItem."""
    wanted = sorted({normalize(a) for a in addresses if a.strip()})
    if not wanted:
        return {}
    found = SuppressionModel.batch_get([(account_id, address) for address in wanted], consistent_read=True)
    return {item.address: item for item in found}


def list_for(caller: Caller, *, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
    """The account's suppressions in address order, a page at a time."""
    last_key = decode_cursor(cursor, keys=("account_id", "address")) if cursor else None
    if last_key is not None and last_key.get("account_id") != {"N": str(caller.account_id)}:
        raise MalformedRequest(NOT_OURS, field="cursor")  # another account's
    results = SuppressionModel.query(caller.account_id, limit=limit, last_evaluated_key=last_key)
    items = [public_view(item) for item in results]
    next_key = results.last_evaluated_key
    return {"items": items, "next_cursor": encode_cursor(next_key) if next_key else None}


def lift(caller: Caller, address: str) -> None:
    """An administrator takes an address off the list: Mailer may write to it again."""
    if not caller.is_admin:
        raise Forbidden("only an administrator may lift a suppression", field="address", reason="admin_only")
    normalized = normalize(address)
    if not normalized or "@" not in normalized or len(normalized) > 320:
        raise InvalidInput(f"{address!r} is not an email address", field="address")
    try:
        SuppressionModel(caller.account_id, normalized).delete(condition=SuppressionModel.address.exists())
    except DeleteError as error:
        if is_condition_failure(error):
            raise NotFound("this address is not suppressed", field="address") from None
        raise
