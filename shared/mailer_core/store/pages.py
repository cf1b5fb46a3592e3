"""Opaque page cursors: DynamoDB's `LastEvaluatedKey`, handed out and taken back by list routes.

A cursor is the key as compact JSON in URL-safe base64. Taking one back, anything that is not
a key of the listing's own shape (not base64, not JSON, not an object, other attributes) is
the caller's 400 (`MalformedRequest`, field `cursor`), never a query DynamoDB would refuse.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Collection, Mapping
from typing import Any

from mailer_core.base.errors import MalformedRequest

NOT_OURS = "cursor is not one this API gave out"


def encode_cursor(key: Mapping[str, Any]) -> str:
    """The cursor for a page that starts after `key` (a query's `last_evaluated_key`)."""
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str, *, keys: Collection[str]) -> dict[str, Any]:
    """The key `cursor` carries, which must hold exactly the attributes `keys`."""
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except ValueError as exc:
        raise MalformedRequest(NOT_OURS, field="cursor") from exc
    if not isinstance(value, dict) or set(value) != set(keys):
        raise MalformedRequest(NOT_OURS, field="cursor")
    return value
