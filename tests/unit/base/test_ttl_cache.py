"""The per-container cache: an entry is fresh while 0 <= now - put_at < ttl."""

from __future__ import annotations

import pytest
from mailer_core.base.ttl_cache import TtlCache


def test_an_entry_is_fresh_for_ttl_seconds_from_when_it_was_put() -> None:
    cache: TtlCache[str, int] = TtlCache(30.0)
    cache.put("a", 1, now=1000.0)

    assert cache.get("a", now=1000.0) == 1
    assert cache.get("a", now=1029.999) == 1
    assert cache.get("a", now=1030.0) is None  # exactly ttl old: stale
    assert cache.get("a", now=5000.0) is None
    assert cache.get("b", now=1000.0) is None


def test_an_entry_from_the_future_is_a_miss() -> None:
    """A clock that went back (a test's, or another stack's) does not trust what it put later."""
    cache: TtlCache[str, int] = TtlCache(30.0)
    cache.put("a", 1, now=1000.0)
    assert cache.get("a", now=999.9) is None


def test_put_replaces_and_restarts_the_ttl() -> None:
    cache: TtlCache[str, int] = TtlCache(10)
    cache.put("a", 1, now=0)
    cache.put("a", 2, now=8)
    assert cache.get("a", now=15) == 2


def test_pop_and_clear_forget() -> None:
    cache: TtlCache[int, str] = TtlCache(60)
    cache.put(1, "one", now=0)
    cache.put(2, "two", now=0)
    cache.pop(1)
    cache.pop(3)  # not there: nothing happens
    assert cache.get(1, now=1) is None and cache.get(2, now=1) == "two"
    cache.clear()
    assert cache.get(2, now=1) is None
    assert len(cache) == 0


def test_get_or_load_reads_once_per_ttl() -> None:
    cache: TtlCache[tuple[int, str], str] = TtlCache(60.0)
    reads: list[float] = []

    def load_at(now: float) -> str:
        def read() -> str:
            reads.append(now)
            return f"read at {now}"

        return cache.get_or_load((1, "m"), now, read)

    assert load_at(100.0) == "read at 100.0"
    assert load_at(159.0) == "read at 100.0"
    assert load_at(160.0) == "read at 160.0"
    assert load_at(150.0) == "read at 150.0"  # from the future: read again
    assert reads == [100.0, 160.0, 150.0]


def test_get_or_load_keeps_a_none() -> None:
    """ "Not there" is an answer: a mailbox that does not exist is not read again for every email."""
    cache: TtlCache[str, int | None] = TtlCache(60.0)
    reads: list[str] = []

    def missing() -> None:
        reads.append("read")

    assert cache.get_or_load("gone", 0.0, missing) is None
    assert cache.get_or_load("gone", 30.0, missing) is None
    assert reads == ["read"]


def test_nothing_is_kept_when_the_load_fails() -> None:
    cache: TtlCache[str, int] = TtlCache(60.0)

    def fail() -> int:
        raise RuntimeError("Kommo is down")

    with pytest.raises(RuntimeError):
        cache.get_or_load("a", 0.0, fail)
    assert len(cache) == 0
    assert cache.get_or_load("a", 1.0, lambda: 7) == 7


def test_the_sites_keep_their_ttls() -> None:
    from mailer_core.accounts import access
    from mailer_core.rendering import variables
    from mailer_core.sending import worker
    from mailer_core.tracking import machine_traffic

    assert access._cache.ttl == access.CACHE_SECONDS == 30.0
    assert variables._SHARED.ttl == variables.ACCOUNT_CACHE_SECONDS == 300.0
    assert machine_traffic._switches.ttl == machine_traffic.SWITCH_CACHE_SECONDS == 300
    assert worker._mailbox_cache.ttl == 60.0
