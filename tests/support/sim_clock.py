"""Simulated time for concurrent tests: threads sleep in virtual time, without waiting for real.

`SimClock` is a `FakeClock` whose `sleep` blocks the calling thread until the simulated time
reaches its wake-up, and the simulated time moves only when every participating thread is
asleep: then it jumps to the earliest wake-up. Work between sleeps (HTTP calls, DynamoDB
writes) takes no simulated time, so N threads that pace themselves with sleeps behave as
they would in real time, only much faster, and deterministic in time.

    clock = SimClock()
    results = clock.run_threads(8, lambda n: worker(n, clock))
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mailer_core.base.clock import FakeClock


@dataclass
class SimClock(FakeClock):
    _cond: threading.Condition = field(default_factory=threading.Condition, repr=False)
    _active: int = 0
    _wakeups: list[tuple[datetime, int]] = field(default_factory=list, repr=False)
    _order: itertools.count[int] = field(default_factory=itertools.count, repr=False)

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._cond:
            if self._active <= 0:  # not a participant: behave as a FakeClock
                self.current = self.current + timedelta(seconds=seconds)
                return
            wake = self.current + timedelta(seconds=seconds)
            heapq.heappush(self._wakeups, (wake, next(self._order)))
            self._active -= 1
            self._advance()
            while self.current < wake:
                self._cond.wait()
            self._active += 1
        if self.on_sleep:
            self.on_sleep(seconds)

    def _advance(self) -> None:
        """With every participant asleep, jump to the earliest wake-up and wake who is due."""
        if self._active == 0 and self._wakeups:
            wake, _ = heapq.heappop(self._wakeups)
            while self._wakeups and self._wakeups[0][0] <= wake:
                heapq.heappop(self._wakeups)
            if wake > self.current:
                self.current = wake
            self._cond.notify_all()

    def run_threads(self, count: int, work: Callable[[int], Any], timeout: float = 60.0) -> list[Any]:
        """Run `work(n)` for n in range(count) in participating threads; their results, in order.

        Re-raises the first exception a thread raised.
        """
        results: list[Any] = [None] * count
        errors: list[BaseException] = []
        start = threading.Barrier(count)
        with self._cond:
            self._active += count

        def run(n: int) -> None:
            try:
                start.wait()
                results[n] = work(n)
            except BaseException as exc:
                errors.append(exc)
            finally:
                with self._cond:
                    self._active -= 1
                    self._advance()

        threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout)
        if any(t.is_alive() for t in threads):
            raise TimeoutError("simulated threads did not finish")
        if errors:
            raise errors[0]
        return results
