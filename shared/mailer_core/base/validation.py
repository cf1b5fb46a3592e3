"""Field checks shared by the API's inputs; each failure names the field and the problem."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any

from mailer_core.base.errors import InvalidInput

# Pragmatic address check: one @, a dotted domain, no spaces or angle brackets. The SMTP
# server has the last word; this catches what a manager mistypes.
_LABEL = r"[A-Za-z0-9\u0080-\uffff](?:[A-Za-z0-9\u0080-\uffff-]{0,61}[A-Za-z0-9\u0080-\uffff])?"
_EMAIL_PATTERN = r"^[^@\s<>(),;:\"\[\]]+@(?:" + _LABEL + r"\.)+[A-Za-z\u0080-\uffff]{2,}$"
_ASCII_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_PATTERN = r"^(?=.{1,253}$)" + _ASCII_LABEL + r"(?:\." + _ASCII_LABEL + r")*$"
# What ends or splits a line of an SMTP or IMAP command: a login or password holding one could
# add a command of its own (IMAP's LOGIN quotes it as it is) or shift AUTH PLAIN's parts (NUL).
COMMAND_BREAKERS = ("\r", "\n", "\0")


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    """Compiled on first use: these Unicode-range patterns cost milliseconds at import."""
    return re.compile(pattern)


def reject_unknown(payload: Mapping[str, Any], allowed: Iterable[str]) -> None:
    unknown = sorted(set(payload) - set(allowed))
    if unknown:
        raise InvalidInput(
            f"unknown field; allowed fields are {', '.join(sorted(allowed))}", field=unknown[0]
        )


def require_object(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise InvalidInput("the body must be a JSON object", field="body")
    return payload


def text(
    payload: Mapping[str, Any],
    name: str,
    *,
    required: bool = False,
    default: str = "",
    max_length: int = 1000,
    allow_empty: bool = True,
) -> str:
    value = payload.get(name)
    if value is None:
        if required:
            raise InvalidInput("is required", field=name)
        return default
    if not isinstance(value, str):
        raise InvalidInput("must be a string", field=name)
    if not allow_empty and not value.strip():
        raise InvalidInput("must not be empty", field=name)
    if len(value) > max_length:
        raise InvalidInput(f"is longer than {max_length} characters", field=name)
    return value


MAX_ID_CHARS = 64  # ids are ULIDs (26 characters); DynamoDB refuses an empty or oversized key


def identifier(value: Any, field: str) -> str:
    """An id the caller names (of an upload, a mailbox …): a string of 1 to 64 characters, so a
    key DynamoDB would refuse (empty, too long) is the caller's 422, not the table's 500."""
    if not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS:
        raise InvalidInput(f"must be an id: a string of 1 to {MAX_ID_CHARS} characters", field=field)
    return value


def optional_identifier(payload: Mapping[str, Any], name: str) -> str | None:
    """`identifier` when the payload gives one; None for a missing, null or empty one."""
    value = payload.get(name)
    return None if value is None or value == "" else identifier(value, name)


def breaks_a_command(value: str) -> bool:
    """Whether `value` holds a CR, LF or NUL (`COMMAND_BREAKERS`)."""
    return any(breaker in value for breaker in COMMAND_BREAKERS)


def credential(
    payload: Mapping[str, Any],
    name: str,
    *,
    max_length: int,
    required: bool = False,
    allow_empty: bool = True,
) -> str:
    """A login or password for SMTP or IMAP: text without CR, LF or NUL (`breaks_a_command`)."""
    value = text(payload, name, required=required, max_length=max_length, allow_empty=allow_empty)
    if breaks_a_command(value):
        raise InvalidInput("must not contain line breaks (CR, LF) or NUL characters", field=name)
    return value


def integer(
    payload: Mapping[str, Any],
    name: str,
    *,
    required: bool = False,
    default: int | None = None,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int | None:
    value = payload.get(name)
    if value is None:
        if required:
            raise InvalidInput("is required", field=name)
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput("must be an integer", field=name)
    if minimum is not None and value < minimum:
        raise InvalidInput(f"must be at least {minimum}", field=name)
    if maximum is not None and value > maximum:
        raise InvalidInput(f"must be at most {maximum}", field=name)
    return value


def page_limit(raw: Any, *, maximum: int, default: int, field: str = "limit") -> int:
    """A list route's `limit` from its query string: a whole number from 1 to `maximum`;
    `default` when absent."""
    if raw is None:
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise InvalidInput("must be a whole number", field=field) from None
    if not 1 <= value <= maximum:
        raise InvalidInput(f"must be from 1 to {maximum}", field=field)
    return value


def number(payload: Mapping[str, Any], name: str, *, default: float, minimum: float, maximum: float) -> float:
    value = payload.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput("must be a number", field=name)
    if not minimum <= value <= maximum:
        raise InvalidInput(f"must be between {minimum:g} and {maximum:g}", field=name)
    return float(value)


def boolean(payload: Mapping[str, Any], name: str, *, default: bool = False) -> bool:
    value = payload.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidInput("must be true or false", field=name)
    return value


def email_address(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput("must be an email address string", field=field)
    address = value.strip()
    if len(address) > 254 or not _compiled(_EMAIL_PATTERN).match(address):
        raise InvalidInput(f"{address!r} is not a valid email address", field=field)
    return address


def email_list(payload: Mapping[str, Any], name: str, *, max_items: int = 50) -> list[str]:
    value = payload.get(name)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise InvalidInput("must be a list of email addresses", field=name)
    if len(value) > max_items:
        raise InvalidInput(f"has more than {max_items} addresses", field=name)
    return [email_address(item, f"{name}[{i}]") for i, item in enumerate(value)]


def hostname(payload: Mapping[str, Any], name: str, *, required: bool = False, default: str = "") -> str:
    value = text(payload, name, required=required, default=default, max_length=253)
    if value and not _compiled(_HOST_PATTERN).fullmatch(value):
        raise InvalidInput(f"{value!r} is not a host name", field=name)
    return value


def timestamp(payload: Mapping[str, Any], name: str) -> datetime | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(
            "must be an ISO 8601 date-time with a time zone, e.g. 2026-11-24T15:00:00+03:00", field=name
        )
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput("is not an ISO 8601 date-time", field=name) from exc
    if parsed.tzinfo is None:
        raise InvalidInput("needs a time zone (e.g. Z or +03:00)", field=name)
    return parsed.astimezone(UTC)
