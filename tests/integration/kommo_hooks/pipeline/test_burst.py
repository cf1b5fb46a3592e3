"""A burst of digital pipeline posts through the local stack's HTTP gateway, as Kommo makes them
when many leads reach a stage at once: every post accepted, every email composed and sent once.

The stack runs every handler in this one process (tests/support/burst_stack.py). How fast the
hook answers (Kommo gives it 2 s) is a figure, not a test: `bench/hook_burst.py` prints it. The
Kommo stand-in and Mailer's Kommo limiter run at a high rate here: the burst tests the hook and
the exactly-once path, not the 7 requests/s pacing (tests/integration/kommo covers that), and
both pipeline workers may serve the one account (MAILER_WORKER_SHARE=2): the share that keeps an
account to one worker has its own tests (tests/integration/events, automation), and here it would only make
the burst drain twice as long.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from mailer_core.store.models import MessageModel

from devstack.kommo_standin import seed
from tests.support.burst_stack import Stack, burst_stack, post

pytestmark = pytest.mark.e2e

BURST = 200
CLIENTS = 25  # posts in flight at once


@pytest.fixture(scope="module")
def local() -> Iterator[Stack]:
    with burst_stack({"MAILER_WORKER_SHARE": "2"}) as stack:
        yield stack


def test_given_200_distinct_posts_in_parallel_then_each_is_accepted_and_sent_exactly_once(
    local: Stack,
) -> None:
    status, first, _ = post(local, -1)  # warm the stack (the first email imports the renderer)
    assert status == 202 and local.stack.drain(timeout=60)
    warm_up = first["message_id"]
    local.sink.clear()

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(lambda n: post(local, n), range(BURST)))
    replays = [post(local, n) for n in range(0, BURST, 20)]  # Kommo sending some of them again
    assert local.stack.drain(timeout=180), "the stack did not settle"

    assert Counter(status for status, _, _ in answers) == {202: BURST}
    assert {status for status, _, _ in replays} == {200}
    accepted = {body["message_id"] for _, body, _ in answers}
    assert len(accepted) == BURST
    stored = [m for m in MessageModel.query(seed.ACCOUNT_ID) if m.message_id != warm_up]
    assert sorted(m.message_id for m in stored) == sorted(accepted)  # each composed once
    assert {m.status for m in stored} == {"sent"}
    received = local.sink.wait_for_count(BURST, timeout=30)
    assert len(received) == BURST  # each sent once: one email per stored message, none twice
    assert sorted(m.message_id for m in received) == sorted(str(m.header_message_id) for m in stored)
