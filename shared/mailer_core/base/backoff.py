"""Exponential backoff: the wait before a retry doubles with each attempt, up to a cap.

One formula for every retry loop (the send worker's SQS delays, the automation runner's, the
Kommo client's sleeps); each caller keeps its own base, cap and attempt numbering.
"""

from __future__ import annotations

from typing import overload


@overload
def exponential(attempt: int, *, base: int, cap: int, first_attempt: int = 0) -> int: ...


@overload
def exponential(attempt: int, *, base: float, cap: float, first_attempt: int = 0) -> float: ...


def exponential(attempt: int, *, base: float, cap: float, first_attempt: int = 0) -> float:
    """`base` after attempt number `first_attempt`, twice that after the next, …, never above `cap`.

    An attempt number below `first_attempt` waits as the first does. Whole-number arguments
    give a whole number of seconds.
    """
    return min(cap, base * 2 ** max(0, attempt - first_attempt))
