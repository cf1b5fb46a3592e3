"""Kommo's hook bodies: form-encoded with nested bracket keys, or JSON, into one nested dict.

Kommo posts its digital pipeline hook as `application/x-www-form-urlencoded` with PHP-style
keys (`event[data][id]=…&action[settings][widget][settings][template_id]=…`), every value a
string. `parse_body` turns that (or the same fields as JSON) into nested dicts; `key[]`
collects a list. Decoding is strict, so nothing is silently taken from a malformed body: a
repeated key, a key used both as a value and as an object, unbalanced brackets, bytes that are
not UTF-8 and bodies over `MAX_BODY_BYTES` are `MalformedRequest` (400).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any
from urllib.parse import parse_qsl

from mailer_core.base.errors import MalformedRequest

MAX_BODY_BYTES = 64 * 1024
MAX_FIELDS = 200
FORM = "application/x-www-form-urlencoded"


def raw_body(body: str | None, *, is_base64: bool) -> bytes:
    """The request's bytes (API Gateway base64-encodes bodies it does not take for text)."""
    if not body:
        return b""
    if is_base64:
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedRequest("the body is not valid base64", field="body") from None
    return body.encode("utf-8")


def parse_body(raw: bytes, content_type: str | None) -> dict[str, Any]:
    """A form or JSON body as nested dicts; the content type decides, JSON when it says nothing."""
    if len(raw) > MAX_BODY_BYTES:
        raise MalformedRequest(f"the body is larger than {MAX_BODY_BYTES} bytes", field="body")
    if not raw.strip():
        raise MalformedRequest("the body is empty", field="body")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequest("the body is not UTF-8", field="body") from None
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == FORM or (not media and not text.lstrip().startswith("{")):
        return parse_form(text)
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise MalformedRequest(f"the body is not valid JSON: {exc}", field="body") from None
    if not isinstance(value, dict):
        raise MalformedRequest("the body must be an object", field="body")
    return value


def parse_form(text: str) -> dict[str, Any]:
    """`a[b][c]=1&a[d]=2&l[]=x&l[]=y` → `{"a": {"b": {"c": "1"}, "d": "2"}, "l": ["x", "y"]}`."""
    try:
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except UnicodeDecodeError:
        raise MalformedRequest("a form value is not UTF-8 once %-decoded", field="body") from None
    except ValueError as exc:
        raise MalformedRequest(f"the body is not a form: {exc}", field="body") from None
    root: dict[str, Any] = {}
    for key, value in pairs:
        _put(root, key, _segments(key), value)
    return root


def _segments(key: str) -> list[str]:
    head, bracket, rest = key.partition("[")
    if not head:
        raise MalformedRequest(f"the form key {key!r} has no name", field="body")
    parts = [head]
    rest = bracket + rest
    while rest:
        if not rest.startswith("[") or "]" not in rest:
            raise MalformedRequest(f"the form key {key!r} has unbalanced brackets", field="body")
        segment, _, rest = rest[1:].partition("]")
        if "[" in segment:
            raise MalformedRequest(f"the form key {key!r} has unbalanced brackets", field="body")
        parts.append(segment)
    if "" in parts[1:-1]:
        raise MalformedRequest(f"the form key {key!r} has an empty segment inside", field="body")
    return parts


def _put(root: dict[str, Any], key: str, parts: list[str], value: str) -> None:
    *path, last = parts
    is_list = last == ""  # key[]=a&key[]=b
    if is_list:
        path, last = path[:-1], path[-1]
    node = root
    for part in path:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise MalformedRequest(f"the form key {key!r} is both a value and an object", field="body")
        node = child
    current = node.get(last)
    if is_list and (current is None or isinstance(current, list)):
        node[last] = [*(current or []), value]
    elif is_list or last in node:
        raise MalformedRequest(f"the form key {key!r} is repeated or clashes with another", field="body")
    else:
        node[last] = value
