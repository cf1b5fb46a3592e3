"""One backoff formula; each caller's waits are the ones its own formula gave before."""

from __future__ import annotations

import pytest
from mailer_core.adapters import sqs
from mailer_core.automation import runner
from mailer_core.base.backoff import exponential
from mailer_core.kommo.client import KommoClient
from mailer_core.sending import outcomes


def test_the_wait_doubles_from_the_base_up_to_the_cap() -> None:
    assert [exponential(n, base=1, cap=10) for n in range(6)] == [1, 2, 4, 8, 10, 10]
    assert [exponential(n, base=1, cap=10, first_attempt=1) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert exponential(-3, base=5, cap=100) == 5  # before the first attempt: as the first
    assert exponential(0, base=5, cap=100, first_attempt=1) == 5


def test_whole_numbers_in_give_whole_numbers_out() -> None:
    waits = [exponential(n, base=30, cap=900, first_attempt=1) for n in range(1, 20)]
    assert all(type(wait) is int for wait in waits)
    assert exponential(100, base=30, cap=900) == 900


def test_the_send_worker_waits_30_s_doubling_up_to_sqs_longest_delay() -> None:
    """Before: min(sqs.MAX_DELAY_SECONDS, RETRY_BASE_SECONDS * 2 ** (attempts - 1)), attempts >= 1
    (the claim counts the attempt before any send)."""
    mine = [
        exponential(a, base=outcomes.RETRY_BASE_SECONDS, cap=sqs.MAX_DELAY_SECONDS, first_attempt=1)
        for a in range(1, 11)
    ]
    assert mine == [30, 60, 120, 240, 480, 900, 900, 900, 900, 900]
    assert mine == [
        min(sqs.MAX_DELAY_SECONDS, outcomes.RETRY_BASE_SECONDS * 2 ** (a - 1)) for a in range(1, 11)
    ]
    assert [str(wait) for wait in mine[:2]] == ["30", "60"]  # the timeline says "next attempt in 30 s"


def test_the_automation_runner_waits_as_before() -> None:
    """Before: int(max(min(CAP, BASE * 2 ** max(0, attempt - 1)), retry_after or 0))."""

    def before(attempt: int, retry_after: float | None = None) -> int:
        wait = min(runner.BACKOFF_CAP_SECONDS, runner.BACKOFF_BASE_SECONDS * 2 ** max(0, attempt - 1))
        return int(max(wait, retry_after or 0))

    assert [runner.backoff_seconds(a) for a in range(0, 8)] == [30, 30, 60, 120, 240, 480, 900, 900]
    cases = [(a, r) for a in range(-1, 12) for r in (None, 0, 0.5, 45.7, 200, 5000.9)]
    assert [runner.backoff_seconds(a, r) for a, r in cases] == [before(a, r) for a, r in cases]
    assert runner.backoff_seconds(1, 100.5) == 100
    assert runner.backoff_seconds(5, 10) == 480


@pytest.mark.parametrize(("base", "cap"), [(0.5, 8.0), (0.1, 1.0), (2, 30), (0.0, 8.0)])
def test_the_kommo_client_waits_as_before(base: float, cap: float) -> None:
    """Before: min(cap, base * (2**attempt)), attempts counted from 0."""
    client = KommoClient(
        "acme", "token", base_url="http://127.0.0.1:1", backoff_base=base, max_retry_wait=cap
    )
    assert [client._backoff(a) for a in range(10)] == [min(cap, base * (2**a)) for a in range(10)]


def test_the_kommo_client_and_token_endpoint_defaults() -> None:
    """The client's defaults and the token endpoint's fixed figures: 0.5 s doubling up to 8 s."""
    client = KommoClient("acme", "token", base_url="http://127.0.0.1:1")
    assert [client._backoff(a) for a in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert [exponential(a, base=0.5, cap=8.0) for a in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
