"""Reading messages: one by id (404 for another user's, unless an administrator), and the
list with filters and an opaque cursor."""

from __future__ import annotations

from typing import Any

from pynamodb.exceptions import DoesNotExist

from mailer_core.accounts.auth import Caller
from mailer_core.base.errors import (
    InvalidInput,
    NotFound,
)
from mailer_core.messages.views import public_view
from mailer_core.store import message_state as state
from mailer_core.store.models import MessageModel
from mailer_core.store.pages import decode_cursor, encode_cursor

# The attributes of a page's last key: the table's, and the by_status index's besides.
LIST_KEYS = frozenset({"account_id", "message_id"})
BY_STATUS_KEYS = LIST_KEYS | {"status_key"}
KEY_TYPES = {"account_id": "N", "message_id": "S", "status_key": "S"}


def load(caller: Caller, message_id: str) -> MessageModel:
    try:
        message = MessageModel.get(caller.account_id, message_id, consistent_read=True)
    except DoesNotExist:
        raise NotFound("no such message", field="message_id") from None
    if not caller.is_admin and int(message.user_id) != caller.user_id:
        raise NotFound("no such message", field="message_id")
    return message


def get(caller: Caller, message_id: str) -> dict[str, Any]:
    message = load(caller, message_id)
    view = public_view(message)
    return view


def _page_start(caller: Caller, cursor: str, status: str | None) -> dict[str, Any]:
    """The key a page starts after: one of this listing, in the caller's account (else 400)."""
    fixed: dict[str, Any] = {"account_id": {"N": str(caller.account_id)}}
    if status:
        fixed["status_key"] = {"S": state.status_key(caller.account_id, status)}
    keys = BY_STATUS_KEYS if status else LIST_KEYS
    types = {name: kind for name, kind in KEY_TYPES.items() if name in keys}
    return decode_cursor(cursor, keys=keys, types=types, fixed=fixed)


def list_for(
    caller: Caller, *, status: str | None, limit: int = 50, cursor: str | None = None
) -> dict[str, Any]:
    if status is not None and status not in state.STATUSES:
        raise InvalidInput(f"must be one of {', '.join(state.STATUSES)}", field="status")
    last_key = _page_start(caller, cursor, status) if cursor else None
    owner = None if caller.is_admin else (MessageModel.user_id == caller.user_id)
    if status:
        results = MessageModel.by_status.query(
            state.status_key(caller.account_id, status),
            scan_index_forward=False,
            limit=limit,
            last_evaluated_key=last_key,
            filter_condition=owner,
        )
    else:
        results = MessageModel.query(
            caller.account_id,
            scan_index_forward=False,
            limit=limit,
            last_evaluated_key=last_key,
            filter_condition=owner,
        )
    items = [public_view(m) for m in results]
    next_key = results.last_evaluated_key
    return {"items": items, "next_cursor": encode_cursor(next_key) if next_key else None}
