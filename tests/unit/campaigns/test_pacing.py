"""A campaign's pace: emails spread over its mailboxes by their rates, slowed by its portions."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime

import pytest
from mailer_core.campaigns import pacing
from mailer_core.campaigns.pacing import Sender
from mailer_core.events import campaign_state as cs


def test_each_mailbox_gets_emails_in_proportion_to_its_rate_and_never_faster() -> None:
    senders = [Sender("slow", 1.0), Sender("fast", 2.0)]
    planned, duration = pacing.plan(300, senders, per_hour=None)
    shares = Counter(mailbox for mailbox, _ in planned)
    assert shares == {"fast": 200, "slow": 100}
    for mailbox, rate in (("slow", 1.0), ("fast", 2.0)):
        times = sorted(delay for m, delay in planned if m == mailbox)
        assert all(b - a >= 1 / rate - 1e-9 for a, b in itertools.pairwise(times))
    assert duration == 100.0


def test_a_per_hour_portion_stretches_the_plan_and_shrinks_the_part() -> None:
    senders = [Sender("a", 1.0), Sender("b", 1.0)]
    planned, duration = pacing.plan(10, senders, per_hour=360)  # one email every 10 s in all
    assert sorted(delay for _, delay in planned) == [10.0 * n for n in range(10)]
    assert duration == 100.0
    assert pacing.part_size(senders, per_hour=360) == 60  # 600 s of emails
    assert pacing.part_size(senders, per_hour=None) == pacing.MAX_PART == 1000  # 1,200 s of emails: capped


def test_a_mailbox_at_its_daily_cap_gets_nothing_and_one_near_it_only_its_room() -> None:
    # GIVEN three 1/s senders: one at its daily cap, one with room for 3 more today, one free
    senders = [Sender("full", 1.0, room=0), Sender("near", 1.0, room=3), Sender("free", 1.0)]
    # WHEN a part of 20 is planned
    planned, duration = pacing.plan(20, senders, per_hour=None)
    # THEN the full one sends none, the near one its 3, the free one the rest at its own rate,
    # and the part lasts until the free one is done
    shares = Counter(mailbox for mailbox, _ in planned)
    assert shares == {"near": 3, "free": 17}
    free = sorted(delay for m, delay in planned if m == "free")
    assert all(b - a >= 1.0 - 1e-9 for a, b in itertools.pairwise(free))
    assert duration == pytest.approx(free[-1] + 1.0)
    assert pacing.room(senders) is None and pacing.room(senders[:2]) == 3
    assert pacing.part_size(senders[:1], per_hour=None) == 1  # no rate left: the part waits instead


def test_the_next_day_starts_at_local_midnight() -> None:
    now = datetime(2026, 12, 4, 22, 30, tzinfo=UTC)  # 01:30 on the 5th in Moscow
    assert pacing.day_of(now, "Europe/Moscow") == "2026-12-05"
    assert pacing.next_day_start(now, "Europe/Moscow") == datetime(2026, 12, 5, 21, 0, tzinfo=UTC)
    assert pacing.next_day_start(now, None) == datetime(2026, 12, 5, 0, 0, tzinfo=UTC)


def test_rates_are_judged_only_once_enough_emails_went_out() -> None:
    few = {"sent": 50, "bounced": 20}
    assert cs.verdict(few, {}) == (None, [])
    reason, _ = cs.verdict({"sent": 200, "bounced": 21}, {})
    assert reason is not None and "bounce rate reached 10.5 %" in reason
    assert cs.verdict({"sent": 1000, "bounced": 60, "complained": 2}, {}) == (
        None,
        ["bounce_rate", "complaint_rate"],
    )
    reason, _ = cs.verdict({"sent": 1000, "complained": 5}, {"complaint_interrupt": 0.5})
    assert reason is not None and "complaint" in reason
    assert cs.verdict({"sent": 200, "bounced": 21}, {"bounce_interrupt": 50}) == (None, ["bounce_rate"])


def test_a_campaign_is_finished_when_every_composed_email_is_done() -> None:
    assert cs.finished({"composed": 3, "sent": 2, "failed": 1})
    assert cs.finished({"composed": 3, "sent": 1, "canceled": 2})
    assert not cs.finished({"composed": 3, "sent": 2, "bounced": 1})  # a bounce came after "sent"
    assert cs.finished({})
