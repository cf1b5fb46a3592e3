"""Time and randomness, injected so tests control them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime


@dataclass
class Clock:
    """Wall-clock time, a sleep, and id generation; tests pass a `FakeClock`."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def timestamp(self) -> float:
        return self.now().timestamp()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def new_id(self) -> str:
        from ulid import ULID  # imported on first use: keeps handler imports light

        return str(ULID.from_timestamp(self.timestamp()))


@dataclass
class FakeClock(Clock):
    """A clock that only moves when told to: `sleep` advances it instantly."""

    current: datetime = field(default_factory=lambda: datetime(2026, 11, 24, 9, 0, tzinfo=UTC))
    on_sleep: Callable[[float], None] | None = None

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        from datetime import timedelta

        self.current = self.current + timedelta(seconds=seconds)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.advance(seconds)
            if self.on_sleep:
                self.on_sleep(seconds)


SYSTEM_CLOCK = Clock()
