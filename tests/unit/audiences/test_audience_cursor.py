"""An audience's page cursor: opaque, round trips, and anything else is the caller's 400."""

from __future__ import annotations

import base64
import json

import pytest
from mailer_core.audiences.reader import Position, sources
from mailer_core.audiences.spec import Audience, KommoFilter
from mailer_core.base.errors import MalformedRequest


@pytest.mark.parametrize(
    "position",
    [
        Position(),
        Position(source=0, offset=250),
        Position(source=1, page=3, last_id=24000777),
        Position(source=4, member="leads:24000001"),
        Position(source=2, member="anna.o'neil+news@пример.рф"),
    ],
)
def test_a_cursor_round_trips(position: Position) -> None:
    cursor = position.encode()
    assert cursor.isascii() and "=" not in cursor.rstrip("=")
    assert Position.decode(cursor) == position


def raw(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64!",
        raw([1, 2]),
        raw({"s": 0}),
        raw({"s": -1, "o": 0, "p": 0, "l": 0, "m": None}),
        raw({"s": 0, "o": "1", "p": 0, "l": 0, "m": None}),
        raw({"s": 0, "o": 0, "p": 0, "l": 0, "m": 5}),
        raw({"s": 0, "o": 0, "p": 0, "l": 0, "m": None, "x": 1}),
        raw({"s": True, "o": 0, "p": 0, "l": 0, "m": None}),
        "w6k=",
    ],
)
def test_a_cursor_not_given_out_is_refused(cursor: str) -> None:
    with pytest.raises(MalformedRequest) as caught:
        Position.decode(cursor)
    assert caught.value.field == "cursor"


def test_sources_come_ids_then_filter_then_each_list() -> None:
    audience = Audience(ids=(1,), filter=KommoFilter(pipeline_id=7), target_lists=("A", "B"))
    assert sources(audience) == [("ids", None), ("filter", None), ("list", "A"), ("list", "B")]
    assert sources(Audience(target_lists=("A",))) == [("list", "A")]
