"""Driving campaigns in tests: an audience of plain addresses read page by page (the audience's
reader replaced, so a test says exactly who is in it and in which pages), and the campaign
and bulk send queues worked through their functions' handlers until nothing is left."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from mailer_core.audiences.pages import AudiencePage, Recipient
from mailer_core.campaigns import expansion, requests

from devstack.resources import StackResources
from tests.support.api_client import load_handler
from tests.support.sqs import deliver


class PagedAudience:
    """`{"pages": [[addresses], …]}` as an audience; counts the pages read."""

    def __init__(self) -> None:
        self.reads = 0

    def __call__(self, account_id: int, audience: dict[str, Any], cursor: str | None) -> AudiencePage:
        self.reads += 1
        pages = audience["pages"]
        index = int(cursor or 0)
        more = index + 1 < len(pages)
        return AudiencePage([Recipient(a) for a in pages[index]], str(index + 1) if more else None)


@pytest.fixture
def paged_audience(monkeypatch: pytest.MonkeyPatch) -> PagedAudience:
    reader = PagedAudience()
    monkeypatch.setattr(requests, "_audience", lambda caller, raw: raw)
    monkeypatch.setattr(expansion, "read_audience", reader)
    monkeypatch.setattr(expansion, "excluded_by_lists", lambda *args: set())
    return reader


def work_queues(
    stack: StackResources,
    *,
    until: Callable[[], bool] | None = None,
    timeout: float = 20.0,
    send: bool = True,
) -> int:
    """Deliver the campaign queue (and the bulk send queue) until both stay empty (and `until`
    holds); the number of records delivered."""
    campaigns, sender = load_handler("campaigns"), load_handler("send")
    delivered, quiet, deadline = 0, 0, time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = deliver(campaigns, stack.refs["CampaignQueue"], stack.attrs[("CampaignQueue", "Arn")])[
            "delivered"
        ]
        if send:
            got += deliver(sender, stack.refs["BulkSendQueue"], stack.attrs[("BulkSendQueue", "Arn")])[
                "delivered"
            ]
        delivered += got
        quiet = quiet + 1 if got == 0 else 0
        if quiet >= 3 and (until is None or until()):
            return delivered
        if got == 0:
            time.sleep(0.3)
    raise AssertionError("the queues did not settle in time")
