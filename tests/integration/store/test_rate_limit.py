"""The per-mailbox token bucket, against moto's DynamoDB."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest
from mailer_core.store import rate_buckets

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC).timestamp()

pytestmark = pytest.mark.usefixtures("aws_stack")


def test_one_per_second_grants_then_waits_until_the_next_slot() -> None:
    first = rate_buckets.take("mb-1", rate_per_second=1, daily_cap=100, now=NOW)
    second = rate_buckets.take("mb-1", rate_per_second=1, daily_cap=100, now=NOW + 0.25)
    third = rate_buckets.take("mb-1", rate_per_second=1, daily_cap=100, now=NOW + 1.0)

    assert first.allowed
    assert not second.allowed and second.reason == "rate"
    assert second.retry_after == pytest.approx(0.75)
    assert third.allowed


def test_buckets_are_per_mailbox() -> None:
    assert rate_buckets.take("mb-a", rate_per_second=1, daily_cap=10, now=NOW).allowed
    assert rate_buckets.take("mb-b", rate_per_second=1, daily_cap=10, now=NOW).allowed
    assert not rate_buckets.take("mb-a", rate_per_second=1, daily_cap=10, now=NOW).allowed


def test_burst_allows_that_many_at_once_then_paces() -> None:
    granted = [
        rate_buckets.take("mb-2", rate_per_second=2, daily_cap=100, now=NOW, burst=3).allowed
        for _ in range(4)
    ]
    assert granted == [True, True, True, False]
    later = rate_buckets.take("mb-2", rate_per_second=2, daily_cap=100, now=NOW + 0.5, burst=3)
    assert later.allowed


def test_sustained_rate_never_exceeds_the_limit_over_a_minute() -> None:
    # GIVEN a sender that asks every 100 ms for 60 s at 2 emails per second
    granted = 0
    for step in range(600):
        if rate_buckets.take("mb-3", rate_per_second=2, daily_cap=10_000, now=NOW + step * 0.1).allowed:
            granted += 1
    # THEN it got 2 per second (plus the first token), never more
    assert granted == 120


def test_daily_cap_stops_until_midnight_utc_and_resets_next_day() -> None:
    for i in range(3):
        assert rate_buckets.take("mb-4", rate_per_second=10, daily_cap=3, now=NOW + i).allowed
    capped = rate_buckets.take("mb-4", rate_per_second=10, daily_cap=3, now=NOW + 10)
    assert not capped.allowed and capped.reason == "daily_cap"
    assert capped.retry_after == pytest.approx(12 * 3600 - 10)

    tomorrow = NOW + 12 * 3600 + 1
    assert rate_buckets.take("mb-4", rate_per_second=10, daily_cap=3, now=tomorrow).allowed


def test_old_day_counters_are_removed(aws_stack) -> None:
    rate_buckets.take("mb-5", rate_per_second=10, daily_cap=5, now=NOW)
    rate_buckets.take("mb-5", rate_per_second=10, daily_cap=5, now=NOW + 86400)
    item = boto3.client("dynamodb").get_item(
        TableName=aws_stack.refs["RateLimitsTable"], Key={"bucket_key": {"S": "mb-5"}}
    )["Item"]
    day_counters = sorted(k for k in item if k.startswith("d_"))
    assert day_counters == ["d_20261125"]
    assert "expires_at" in item


def test_a_batch_reserves_its_tokens_in_one_request_paced_by_the_rate() -> None:
    # GIVEN an idle bucket at 2 emails per second
    batch = rate_buckets.take("mb-6", rate_per_second=2, daily_cap=100, now=NOW, count=4)
    # THEN four tokens are granted, half a second apart, and the next two seconds are taken
    assert (batch.allowed, batch.granted, batch.interval) == (True, 4, 0.5)
    assert not rate_buckets.take("mb-6", rate_per_second=2, daily_cap=100, now=NOW + 1.9).allowed
    assert rate_buckets.take("mb-6", rate_per_second=2, daily_cap=100, now=NOW + 2.0).allowed


def test_a_reservation_never_passes_the_daily_cap_nor_a_busy_bucket() -> None:
    capped = rate_buckets.take("mb-7", rate_per_second=10, daily_cap=3, now=NOW, count=5)
    assert (capped.allowed, capped.granted) == (True, 3)  # no more than the day allows
    done = rate_buckets.take("mb-7", rate_per_second=10, daily_cap=3, now=NOW + 1, count=2)
    assert not done.allowed and done.reason == "daily_cap"

    rate_buckets.take("mb-8", rate_per_second=10, daily_cap=3, now=NOW)  # one used today
    partly = rate_buckets.take("mb-8", rate_per_second=10, daily_cap=3, now=NOW + 1, count=3)
    assert (partly.allowed, partly.granted) == (True, 1)  # three would pass the cap: one is granted
    busy = rate_buckets.take("mb-8", rate_per_second=10, daily_cap=3, now=NOW + 1.01, count=2)
    assert not busy.allowed and busy.reason == "rate"


def test_a_held_bucket_grants_nothing_until_then_and_a_hold_never_moves_back() -> None:
    # GIVEN a bucket in use, held for 300 s (Kommo answered 429 with retry_after 300)
    assert rate_buckets.take("kommo#1", rate_per_second=6.3, daily_cap=10**12, now=NOW).allowed
    assert rate_buckets.hold("kommo#1", until=NOW + 300, now=NOW)
    # THEN a taker is refused with what is left of the hold, and told why
    refused = rate_buckets.take("kommo#1", rate_per_second=6.3, daily_cap=10**12, now=NOW + 100)
    assert (refused.allowed, refused.reason) == (False, "held")
    assert refused.retry_after == pytest.approx(200)
    # AND a shorter hold asked meanwhile changes nothing
    assert not rate_buckets.hold("kommo#1", until=NOW + 150, now=NOW + 100)
    assert not rate_buckets.take("kommo#1", rate_per_second=6.3, daily_cap=10**12, now=NOW + 299).allowed
    # AND when the hold is over, tokens are granted again, and a refusal is the rate's once more
    assert rate_buckets.take("kommo#1", rate_per_second=6.3, daily_cap=10**12, now=NOW + 300).allowed
    paced = rate_buckets.take("kommo#1", rate_per_second=6.3, daily_cap=10**12, now=NOW + 300.01)
    assert (paced.allowed, paced.reason) == (False, "rate")


def test_peek_tells_the_next_turn_and_the_cap_without_taking_anything() -> None:
    # GIVEN a bucket that just granted its one token of the second, and one with its cap used
    assert rate_buckets.take("mb-7", rate_per_second=1, daily_cap=100, now=NOW).allowed
    assert rate_buckets.take("mb-8", rate_per_second=10, daily_cap=1, now=NOW).allowed
    # THEN peeking says when the next turn comes, and why
    assert rate_buckets.peek("mb-7", daily_cap=100, now=NOW + 0.5) == rate_buckets.NextTurn(NOW + 1.0)
    capped = rate_buckets.peek("mb-8", daily_cap=1, now=NOW + 5)
    assert capped == rate_buckets.NextTurn(NOW + 12 * 3600, "daily_cap")
    assert rate_buckets.peek("mb-unused", daily_cap=1, now=NOW).at <= NOW
    # ... and took nothing
    assert rate_buckets.take("mb-7", rate_per_second=1, daily_cap=100, now=NOW + 1.0).allowed


def test_a_token_given_back_frees_its_slot_and_its_place_in_the_day() -> None:
    # GIVEN a bucket with a daily cap of two whose token was taken but not used
    assert rate_buckets.take("mb-9", rate_per_second=1, daily_cap=2, now=NOW).allowed
    rate_buckets.give_back("mb-9", at=NOW, rate_per_second=1)
    # THEN the slot is free again, and the day still has room for two
    assert rate_buckets.take("mb-9", rate_per_second=1, daily_cap=2, now=NOW + 0.1).allowed
    assert rate_buckets.take("mb-9", rate_per_second=1, daily_cap=2, now=NOW + 1.2).allowed
    assert rate_buckets.take("mb-9", rate_per_second=1, daily_cap=2, now=NOW + 5).reason == "daily_cap"


def test_a_token_given_back_after_a_later_one_was_taken_frees_only_its_place_in_the_day() -> None:
    # GIVEN a token given back after the next one was taken
    assert rate_buckets.take("mb-10", rate_per_second=1, daily_cap=2, now=NOW).allowed
    assert rate_buckets.take("mb-10", rate_per_second=1, daily_cap=2, now=NOW + 1.0).allowed
    rate_buckets.give_back("mb-10", at=NOW, rate_per_second=1)
    # THEN the later token's slot stays taken, and the day has room for one more
    assert not rate_buckets.take("mb-10", rate_per_second=1, daily_cap=2, now=NOW + 1.5).allowed
    assert rate_buckets.take("mb-10", rate_per_second=1, daily_cap=2, now=NOW + 2.0).allowed


def test_a_token_moves_later_only_while_nobody_took_the_next() -> None:
    # GIVEN a token taken for NOW
    assert rate_buckets.take("mb-11", rate_per_second=1, daily_cap=10, now=NOW).allowed
    # WHEN it moves to NOW + 0.3 (nobody took the next)
    assert rate_buckets.move_later("mb-11", at=NOW, to=NOW + 0.3, rate_per_second=1)
    # THEN the next turn is a second after the new moment, and a second move of the old one fails
    assert not rate_buckets.take("mb-11", rate_per_second=1, daily_cap=10, now=NOW + 1.2).allowed
    assert rate_buckets.take("mb-11", rate_per_second=1, daily_cap=10, now=NOW + 1.3).allowed
    assert not rate_buckets.move_later("mb-11", at=NOW, to=NOW + 0.5, rate_per_second=1)


def test_a_pending_priority_email_goes_before_the_bulk_lane_then_lets_it_on() -> None:
    # GIVEN a manager's email announced on a 1/s mailbox
    rate_buckets.announce_priority("mb-p", now=NOW)
    # WHEN a bulk email asks for the turn first
    bulk = rate_buckets.take("mb-p", rate_per_second=1, daily_cap=100, now=NOW + 0.1, lane="bulk")
    # THEN it is refused, naming why, and tries again one interval later
    assert not bulk.allowed and bulk.reason == "priority" and bulk.retry_after == pytest.approx(1.0)
    # WHEN the manager's email takes its turn
    assert rate_buckets.take("mb-p", rate_per_second=1, daily_cap=100, now=NOW + 0.2).allowed
    # THEN the bulk lane is back on at the next turn
    assert rate_buckets.take("mb-p", rate_per_second=1, daily_cap=100, now=NOW + 1.2, lane="bulk").allowed


def test_an_announced_email_that_never_comes_holds_the_bulk_lane_back_for_the_window_only() -> None:
    rate_buckets.announce_priority("mb-q", now=NOW, window=5)
    assert not rate_buckets.take("mb-q", rate_per_second=1, daily_cap=100, now=NOW + 4, lane="bulk").allowed
    assert rate_buckets.take("mb-q", rate_per_second=1, daily_cap=100, now=NOW + 5.5, lane="bulk").allowed
    # ... and a bulk lane's batch of tokens on a mailbox nobody announced on is granted as before
    batch = rate_buckets.take("mb-r", rate_per_second=1, daily_cap=100, now=NOW, lane="bulk", count=3)
    assert batch.granted == 3
