"""Page cursors: what a list route hands out it takes back; anything else is the caller's 400."""

from __future__ import annotations

import base64
import json

import pytest
from mailer_core.base.errors import MalformedRequest
from mailer_core.store.pages import decode_cursor, encode_cursor

KEY = {"account_id": {"N": "31000001"}, "message_id": {"S": "01JABCDEF/ü"}}


def _raw(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def test_a_cursor_gives_back_its_key() -> None:
    cursor = encode_cursor(KEY)
    assert decode_cursor(cursor, keys=("account_id", "message_id")) == KEY
    assert decode_cursor(cursor, keys=frozenset({"message_id", "account_id"})) == KEY


def test_a_cursor_is_url_safe_compact_json() -> None:
    cursor = encode_cursor({"k": "??>>~~"})
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=")
    assert base64.urlsafe_b64decode(cursor) == b'{"k":"??>>~~"}'


@pytest.mark.parametrize(
    "cursor",
    [
        "bm9wZQ",  # "nope": not even padded base64
        "bm9wZQ==",  # "nope": base64, not JSON
        "%%%",
        "\u00e9",
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),  # not UTF-8
        _raw([1, 2]),  # JSON, not an object
        _raw("account_id"),
        _raw({}),
        _raw({"account_id": {"N": "1"}}),  # a key short of one attribute
        _raw({**KEY, "status_key": {"S": "1#queued"}}),  # another listing's key
        _raw({"account_id": {"N": "1"}, "address": {"S": "a@b.example"}}),
        encode_cursor(KEY)[:-4],  # cut short
        # the right attributes, but not as DynamoDB writes a key: a query would fail (500)
        _raw({"account_id": "31000001", "message_id": "01J"}),
        _raw({"account_id": {"N": "31000001"}, "message_id": None}),
        _raw({"account_id": {"N": "abc"}, "message_id": {"S": "01J"}}),
        _raw({"account_id": {"N": 31000001}, "message_id": {"S": "01J"}}),
        _raw({"account_id": {"N": "31000001"}, "message_id": {"S": ""}}),
        _raw({"account_id": {"N": "31000001"}, "message_id": {"S": "01J", "N": "1"}}),
        _raw({"account_id": {"N": "31000001"}, "message_id": {"BOOL": True}}),
        _raw({"account_id": {"N": "31000001"}, "message_id": {"L": [{"S": "01J"}]}}),
        "\udc80",  # not even text that encodes
    ],
)
def test_anything_else_is_a_400_on_the_cursor(cursor: str) -> None:
    with pytest.raises(MalformedRequest) as err:
        decode_cursor(cursor, keys=("account_id", "message_id"))
    assert err.value.status == 400
    assert err.value.field == "cursor"
    assert err.value.message == "cursor is not one this API gave out"


def test_a_cursor_must_carry_the_values_its_listing_fixes() -> None:
    mine = {"account_id": {"N": "31000001"}}
    assert decode_cursor(encode_cursor(KEY), keys=KEY.keys(), fixed=mine) == KEY
    for fixed in ({"account_id": {"N": "42000002"}}, {"account_id": {"S": "31000001"}}):
        with pytest.raises(MalformedRequest) as err:
            decode_cursor(encode_cursor(KEY), keys=KEY.keys(), fixed=fixed)
        assert (err.value.status, err.value.field) == (400, "cursor")


def test_a_cursor_must_carry_the_types_its_listing_has() -> None:
    types = {"account_id": "N", "message_id": "S"}
    assert decode_cursor(encode_cursor(KEY), keys=KEY.keys(), types=types) == KEY
    numbered = {**KEY, "message_id": {"N": "5"}}  # DynamoDB would refuse to start a query there
    with pytest.raises(MalformedRequest) as err:
        decode_cursor(encode_cursor(numbered), keys=KEY.keys(), types=types)
    assert (err.value.status, err.value.field) == (400, "cursor")
