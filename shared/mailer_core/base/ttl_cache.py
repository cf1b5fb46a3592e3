"""A small per-container cache whose entries last `ttl` seconds.

A warm Lambda container keeps what it has read (an account's state, a mailbox, Kommo's users)
between invocations; each entry is trusted for `ttl` seconds from when it was put. Time is
passed in (`now`, in the caller's clock: epoch seconds or `time.monotonic()`, one per cache),
so tests control it. An entry is fresh while `0 <= now - put_at < ttl`: one older than that,
or one put in the future of `now` (a clock that went back), is a miss.

Not thread-safe, and not shared between containers: another container may hold an older
copy for up to `ttl`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Values by key, each fresh for `ttl` seconds after it was put."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[K, tuple[float, V]] = {}

    def _fresh(self, key: K, now: float) -> tuple[float, V] | None:
        entry = self._entries.get(key)
        if entry is None or not 0 <= now - entry[0] < self.ttl:
            return None
        return entry

    def get(self, key: K, now: float) -> V | None:
        """The fresh value of `key`, else None (a cached None reads as a miss: see `get_or_load`)."""
        entry = self._fresh(key, now)
        return None if entry is None else entry[1]

    def get_or_load(self, key: K, now: float, load: Callable[[], V]) -> V:
        """The fresh value of `key`; else `load()`, kept from `now` (None too: "not there" is an
        answer worth keeping). Nothing is kept when `load` raises."""
        entry = self._fresh(key, now)
        if entry is not None:
            return entry[1]
        value = load()
        self.put(key, value, now)
        return value

    def put(self, key: K, value: V, now: float) -> None:
        self._entries[key] = (now, value)

    def pop(self, key: K) -> None:
        """Forget `key` (nothing happens when it is not there)."""
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
