"""An audience's JSON: what is refused (naming the field) and what is stored."""

from __future__ import annotations

from typing import Any

import pytest
from mailer_core.audiences.spec import Audience, KommoFilter, parse
from mailer_core.base.errors import InvalidInput


def refused(payload: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        parse(31000001, payload)
    return caught.value


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ("leads", "audience"),
        ({}, "audience"),
        ({"entity_type": "leads"}, "audience"),
        ({"ids": []}, "audience"),
        ({"ids": [1], "segment": 4}, "audience.segment"),
        ({"ids": [1], "entity_type": "customers"}, "audience.entity_type"),
        ({"ids": [1], "contacts": "first"}, "audience.contacts"),
        ({"ids": "1,2"}, "audience.ids"),
        ({"ids": [1, "2"]}, "audience.ids[1]"),
        ({"ids": [1, 0]}, "audience.ids[1]"),
        ({"ids": [True]}, "audience.ids[0]"),
        ({"filter": []}, "audience.filter"),
        ({"filter": {}}, "audience.filter"),
        ({"filter": {"stage": 1}}, "audience.filter.stage"),
        ({"filter": {"status_ids": [5]}}, "audience.filter.pipeline_id"),
        ({"filter": {"pipeline_id": "7"}}, "audience.filter.pipeline_id"),
        ({"filter": {"pipeline_id": 7, "status_ids": [5, -1]}}, "audience.filter.status_ids[1]"),
        ({"filter": {"responsible_user_ids": 5}}, "audience.filter.responsible_user_ids"),
        ({"filter": {"tags": ["VIP", " "]}}, "audience.filter.tags[1]"),
        ({"entity_type": "contacts", "filter": {"pipeline_id": 7}}, "audience.filter.pipeline_id"),
        (
            {"entity_type": "companies", "filter": {"pipeline_id": 7, "status_ids": [1]}},
            "audience.filter.pipeline_id",
        ),
        ({"target_lists": "01J"}, "audience.target_lists"),
        ({"target_lists": ["01J", "../x"]}, "audience.target_lists[1]"),
        ({"ids": [1], "exclude_lists": [5]}, "audience.exclude_lists[0]"),
        ({"exclude_lists": ["01J"]}, "audience"),
    ],
)
def test_a_bad_audience_is_refused_naming_the_field(payload: Any, field: str) -> None:
    assert refused(payload).field == field


def test_an_empty_audience_says_so() -> None:
    error = refused({"exclude_lists": []})
    assert error.details["reason"] == "empty" and "empty" in error.message


def test_any_number_of_ids_each_once_in_the_order_given() -> None:
    ids = [*range(1, 3001), 5, 7]
    audience = parse(31000001, {"ids": ids})
    assert audience.ids == tuple(range(1, 3001))
    assert audience.entity_type == "leads" and audience.contacts == "main"


def test_stored_as_json_and_read_back_the_same() -> None:
    payload = {
        "entity_type": "leads",
        "ids": [3, 1],
        "filter": {"pipeline_id": 7, "status_ids": [70, 71], "responsible_user_ids": [5], "tags": ["VIP"]},
        "contacts": "all",
    }
    audience = parse(31000001, payload)
    stored = audience.to_json()
    assert stored == payload
    assert Audience.from_json(stored) == audience


def test_the_filter_speaks_kommos_parameters() -> None:
    stages = KommoFilter(pipeline_id=7, status_ids=(70, 71), responsible_user_ids=(5, 6))
    assert stages.params() == [
        ("filter[statuses][0][pipeline_id]", "7"),
        ("filter[statuses][0][status_id]", "70"),
        ("filter[statuses][1][pipeline_id]", "7"),
        ("filter[statuses][1][status_id]", "71"),
        ("filter[responsible_user_id][]", "5"),
        ("filter[responsible_user_id][]", "6"),
    ]
    assert KommoFilter(pipeline_id=7).params() == [("filter[pipeline_id][]", "7")]
    assert KommoFilter(tags=("VIP",)).params() == []


def test_tags_are_matched_on_the_entity_without_case() -> None:
    vip = {"_embedded": {"tags": [{"id": 1, "name": "vip"}]}}
    plain = {"pipeline_id": 7, "_embedded": {"tags": []}}
    assert KommoFilter(tags=("VIP", "Hot")).keeps(vip)
    assert not KommoFilter(tags=("VIP",)).keeps(plain)
    assert KommoFilter(pipeline_id=7).keeps(plain)


def test_kommos_part_of_the_filter_is_checked_again_on_each_entity() -> None:
    """An account without Kommo's API filtering could answer with its whole list."""
    lead = {"pipeline_id": 7, "status_id": 70, "responsible_user_id": 5, "_embedded": {"tags": []}}
    assert KommoFilter(pipeline_id=7, status_ids=(70, 71), responsible_user_ids=(5,)).keeps(lead)
    assert not KommoFilter(pipeline_id=8).keeps(lead)
    assert not KommoFilter(pipeline_id=7, status_ids=(71,)).keeps(lead)
    assert not KommoFilter(responsible_user_ids=(6,)).keeps(lead)
    assert KommoFilter(responsible_user_ids=(5,), tags=("VIP",)).meets_kommos_part(lead)
