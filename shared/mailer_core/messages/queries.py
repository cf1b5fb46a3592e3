"""Reading messages: one by id (404 for another user's, unless an administrator), and the
list with filters (a status, a Kommo entity: one card's emails) and an opaque cursor."""

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
from mailer_core.store.models import MessageModel, entity_key
from mailer_core.store.pages import decode_cursor, encode_cursor

# The attributes of a page's last key: the table's, and the by_status or by_entity index's besides.
LIST_KEYS = frozenset({"account_id", "message_id"})
BY_STATUS_KEYS = LIST_KEYS | {"status_key"}
BY_ENTITY_KEYS = LIST_KEYS | {"entity_key"}
KEY_TYPES = {"account_id": "N", "message_id": "S", "status_key": "S", "entity_key": "S"}
# `entity_type` as the API's entity objects name it ("leads"), or in the singular ("lead").
ENTITY_TYPES = {"leads": "leads", "contacts": "contacts", "companies": "companies"}
ENTITY_TYPES |= {"lead": "leads", "contact": "contacts", "company": "companies"}
MAX_ENTITY_ID = 10**15


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


def _page_start(
    caller: Caller, cursor: str, status: str | None, by_entity: str | None = None
) -> dict[str, Any]:
    """The key a page starts after: one of this listing, in the caller's account (else 400)."""
    fixed: dict[str, Any] = {"account_id": {"N": str(caller.account_id)}}
    if by_entity:
        fixed["entity_key"] = {"S": by_entity}
        keys = BY_ENTITY_KEYS
    elif status:
        fixed["status_key"] = {"S": state.status_key(caller.account_id, status)}
        keys = BY_STATUS_KEYS
    else:
        keys = LIST_KEYS
    types = {name: kind for name, kind in KEY_TYPES.items() if name in keys}
    return decode_cursor(cursor, keys=keys, types=types, fixed=fixed)


def entity_filter(entity_type: str | None, entity_id: str | None) -> tuple[str, int] | None:
    """The query's `entity_type` and `entity_id`, given together (else 422 naming the missing one)."""
    if entity_type is None and entity_id is None:
        return None
    if entity_type is None:
        raise InvalidInput("is required with entity_id (lead, contact or company)", field="entity_type")
    kind = ENTITY_TYPES.get(entity_type.strip().lower())
    if kind is None:
        raise InvalidInput(
            "must be one of lead, contact, company (or leads, contacts, companies)", field="entity_type"
        )
    if entity_id is None:
        raise InvalidInput("is required with entity_type", field="entity_id")
    text = entity_id.strip()
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) < MAX_ENTITY_ID:
        raise InvalidInput("must be a positive whole number (the Kommo entity's id)", field="entity_id")
    return kind, int(text)


def list_for(
    caller: Caller,
    *,
    status: str | None,
    limit: int = 50,
    cursor: str | None = None,
    entity: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """One page of the caller's messages (an administrator's: the account's), newest first:
    all, one status's (the by_status index), or one Kommo entity's (the by_entity index, a
    status then filters the page)."""
    if status is not None and status not in state.STATUSES:
        raise InvalidInput(f"must be one of {', '.join(state.STATUSES)}", field="status")
    by_entity = entity_key(caller.account_id, entity)
    last_key = _page_start(caller, cursor, status, by_entity) if cursor else None
    owner = None if caller.is_admin else (MessageModel.user_id == caller.user_id)
    if by_entity:
        wanted = owner
        if status:
            wanted = (
                (MessageModel.status == status)
                if wanted is None
                else (wanted & (MessageModel.status == status))
            )
        results = MessageModel.by_entity.query(
            by_entity,
            scan_index_forward=False,
            limit=limit,
            last_evaluated_key=last_key,
            filter_condition=wanted,
        )
    elif status:
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
