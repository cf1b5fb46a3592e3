"""The timeline's order and kinds, reading UPDATED_OLD list answers, and machines' classes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from mailer_core.store import timeline
from mailer_core.store.models import MessageModel
from mailer_core.tracking import machine_traffic

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def test_the_view_sorts_by_time_keeping_the_written_order_of_equal_times() -> None:
    # GIVEN a history written out of time order (the actions function appended a run late)
    message = MessageModel(
        1,
        "M",
        history=[
            timeline.entry(T0, "queued"),
            timeline.entry(T0 + timedelta(seconds=5), "trigger_failed", "Kommo: 400 Bad Request"),
            timeline.entry(T0 + timedelta(seconds=1), "sent", "250 ok"),
            timeline.entry(T0 + timedelta(seconds=1), "opened"),
            timeline.entry(T0 + timedelta(seconds=2), "something_new"),
        ],
    )
    # THEN the view is in time order, each step with its kind and whether it went wrong
    assert [(s["event"], s["kind"], s["failure"]) for s in timeline.view(message)] == [
        ("queued", "status", False),
        ("sent", "status", False),
        ("opened", "tracking", False),
        ("something_new", "other", False),
        ("trigger_failed", "automation", True),
    ]


def test_a_long_detail_is_cut() -> None:
    assert (
        len(timeline.entry(T0, "clicked", "https://x.example/" + "a" * 2000).detail or "")
        == timeline.DETAIL_CHARS
    )


@pytest.mark.parametrize(
    ("answer", "index", "old"),
    [
        ({"link_clicks": {"L": [{"N": "4"}]}}, 3, 4),  # DynamoDB: the updated element alone
        ({"link_clicks": {"L": [{"N": "0"}, {"N": "7"}, {"N": "0"}]}}, 1, 7),  # moto: the whole list
        ({"link_clicks": {"L": [{"N": "0"}]}}, 0, 0),
        ({}, 2, None),
    ],
)
def test_the_old_value_of_a_list_element_is_read_from_either_answer(
    answer: dict[str, object], index: int, old: int | None
) -> None:
    assert timeline.old_element(answer, "link_clicks", index) == old


@pytest.mark.parametrize(
    ("request_", "label"),
    [
        ({"method": "HEAD"}, "HEAD request"),
        ({"user_agent": "Mozilla/5.0 (compatible; MSOffice-SafeLinks/1.0)"}, "scanner: safelinks"),
        ({"user_agent": "curl/8.5.0"}, "scanner: curl"),
        ({"user_agent": machine_traffic.APPLE_MPP_AGENT}, "Apple Mail Privacy Protection"),
        ({"source_ip": "40.107.1.2"}, "mail security gateway"),
        ({"user_agent": "Mozilla/5.0 (Windows NT 10.0) Chrome/131.0"}, ""),  # a person: no class
    ],
)
def test_a_machine_verdict_names_a_short_class_and_nothing_about_the_requester(
    request_: dict[str, str], label: str
) -> None:
    verdict = machine_traffic.classify(
        kind="open",
        method=request_.get("method", "GET"),
        user_agent=request_.get("user_agent", "Mozilla/5.0 (Windows NT 10.0) Chrome/131.0"),
        source_ip=request_.get("source_ip", "198.51.100.7"),
        headers={},
        seconds_since_send=3600,
    )
    assert verdict.label == label and verdict.machine is bool(label)
