"""Opaque page cursors: DynamoDB's `LastEvaluatedKey`, handed out and taken back by list routes.

A cursor is the key as compact JSON in URL-safe base64. Taking one back, anything that is not
a key of the listing's own shape (not base64, not JSON, not an object, other attributes, an
attribute that is not a DynamoDB string or number, another account's or another listing's
key) is the caller's 400 (`MalformedRequest`, field `cursor`), never a query DynamoDB would
refuse (a 500).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Collection, Mapping
from typing import Any

from mailer_core.base.errors import MalformedRequest

NOT_OURS = "cursor is not one this API gave out"
_NUMBER = re.compile(r"-?\d{1,38}(\.\d{1,38})?")


def encode_cursor(key: Mapping[str, Any]) -> str:
    """The cursor for a page that starts after `key` (a query's `last_evaluated_key`)."""
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


def decode_cursor(
    cursor: str,
    *,
    keys: Collection[str],
    types: Mapping[str, str] | None = None,
    fixed: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The key `cursor` carries, which must hold exactly the attributes `keys`, each a DynamoDB
    string or number (of the type `types` names, "S" or "N", where it names one), and the
    values `fixed` names (the caller's account, the listing's index key): a page never starts
    in another account's or another listing's key."""
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except ValueError as exc:
        raise MalformedRequest(NOT_OURS, field="cursor") from exc
    if not isinstance(value, dict) or set(value) != set(keys):
        raise MalformedRequest(NOT_OURS, field="cursor")
    if not all(_is_key_value(attribute) for attribute in value.values()):
        raise MalformedRequest(NOT_OURS, field="cursor")
    if any(kind not in value[name] for name, kind in (types or {}).items()):
        raise MalformedRequest(NOT_OURS, field="cursor")
    if any(value[name] != expected for name, expected in (fixed or {}).items()):
        raise MalformedRequest(NOT_OURS, field="cursor")
    return value


def _is_key_value(attribute: Any) -> bool:
    """A key attribute as DynamoDB writes it: {"S": "text"} or {"N": "123"}."""
    if not isinstance(attribute, dict) or len(attribute) != 1:
        return False
    ((kind, text),) = attribute.items()
    if kind == "S":
        return isinstance(text, str) and text != ""
    return kind == "N" and isinstance(text, str) and _NUMBER.fullmatch(text) is not None
