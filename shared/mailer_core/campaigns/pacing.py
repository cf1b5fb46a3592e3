"""A campaign's pace: which mailbox sends each email of a part, and when.

Each sender mailbox sends at its own rate; the campaign's per-hour portion (if any) slows
them all alike. A part holds what the senders send in about `PART_SECONDS`, so its emails'
SQS delays stay under SQS's 15 minutes and a pause holds at most one part's emails in the
queue. The send worker's token buckets remain the ceiling; the plan only spreads the emails
so that they rarely have to wait.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

PART_SECONDS = 600.0
MAX_PART = 1000  # and never more than its package (a Kommo page: 250; a list's: up to 5,000)


@dataclass(frozen=True)
class Sender:
    mailbox_id: str
    rate: float  # emails per second
    room: int | None = None  # emails its daily cap lets it send today; None: no limit


def with_room(senders: list[Sender]) -> list[Sender]:
    """The senders whose daily cap is not reached: the part is spread over them only."""
    return [s for s in senders if s.room is None or s.room > 0]


def room(senders: list[Sender]) -> int | None:
    """How many emails the senders may still send today together; None: no limit."""
    if any(s.room is None for s in senders):
        return None
    return sum(max(0, int(s.room or 0)) for s in senders)


def effective_rate(senders: list[Sender], per_hour: int | None) -> float:
    total = sum(s.rate for s in with_room(senders))
    return min(total, per_hour / 3600.0) if per_hour else total


def part_size(senders: list[Sender], per_hour: int | None) -> int:
    return max(1, min(MAX_PART, int(effective_rate(senders, per_hour) * PART_SECONDS)))


def plan(count: int, senders: list[Sender], per_hour: int | None) -> tuple[list[tuple[str, float]], float]:
    """(mailbox, delay in seconds) for each of `count` emails, and the part's duration.

    The campaign's clock ticks at its effective rate (the senders' rates summed, or the
    per-hour portion if slower); each email goes out at its tick or when its mailbox is free
    again, whichever is later, from the mailbox free first. So no mailbox goes faster than its
    rate, the campaign no faster than its portion, and a 2/s mailbox sends twice what a 1/s
    one does.
    A sender with a `room` (its daily cap's) gets no more emails than that, the others take
    the rest; `count` must fit the senders' room together (`room`).
    """
    senders = with_room(senders)
    rate = effective_rate(senders, per_hour)
    free = [(0.0, n) for n in range(len(senders))]
    heapq.heapify(free)
    planned: list[tuple[str, float]] = []
    given = [0] * len(senders)
    # when the last sender is free again, once a sender ran out of room: the rest take longer
    end, ran_out = 0.0, False
    for k in range(count):
        if not free:
            raise ValueError("more emails than the senders' daily caps leave room for")
        at, n = heapq.heappop(free)
        when = max(at, k / rate)
        planned.append((senders[n].mailbox_id, when))
        end = max(end, when + 1.0 / senders[n].rate)
        given[n] += 1
        cap = senders[n].room
        if cap is None or given[n] < cap:
            heapq.heappush(free, (when + 1.0 / senders[n].rate, n))
        else:
            ran_out = True
    if not rate:
        return planned, 0.0
    return planned, max(count / rate, end) if ran_out else count / rate


def day_of(now: datetime, timezone: str | None) -> str:
    return now.astimezone(ZoneInfo(timezone or "UTC")).date().isoformat()


def next_day_start(now: datetime, timezone: str | None) -> datetime:
    zone = ZoneInfo(timezone or "UTC")
    local = now.astimezone(zone)
    start = datetime(local.year, local.month, local.day, tzinfo=zone) + timedelta(days=1)
    return start.astimezone(now.tzinfo)


def seconds_until(moment: datetime, now: datetime) -> int:
    return max(0, math.ceil((moment - now).total_seconds()))
