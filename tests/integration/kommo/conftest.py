"""Fixtures for the Kommo stand-in and client tests: one stand-in per test, on a FakeClock."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from mailer_core.base.clock import FakeClock
from mailer_core.kommo.client import KommoClient

from devstack import kommo_seed as seed
from devstack.kommo_seed import Seed, demo_seed
from devstack.kommo_standin import KommoStandIn
from tests.integration.kommo.kommo_helpers import MANAGER_TOKEN, TOKEN, Answer, Api


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def clock(sleeps: list[float]) -> FakeClock:
    """One clock for the stand-in and the client: the client's sleeps move the stand-in's time."""
    return FakeClock(on_sleep=sleeps.append)


@pytest.fixture
def sample() -> Seed:
    """The demo account; a test may change it before asking for `standin`."""
    return demo_seed()


@pytest.fixture
def standin(sample: Seed, clock: FakeClock) -> Iterator[KommoStandIn]:
    with KommoStandIn(sample, clock=clock) as running:
        running.add_token(seed.ACCOUNT_ID, TOKEN)
        running.add_token(seed.ACCOUNT_ID, MANAGER_TOKEN, user_id=seed.MANAGER_USER_ID)
        yield running


@pytest.fixture
def client(standin: KommoStandIn, clock: FakeClock) -> KommoClient:
    return KommoClient(seed.SUBDOMAIN, TOKEN, base_url=standin.base_url, clock=clock)


@pytest.fixture
def api(standin: KommoStandIn) -> Api:
    """Raw HTTP to the stand-in, for checking its wire format without the client in between."""

    def call(method: str, target: str, body: Any = None, token: str | None = TOKEN) -> Answer:
        url = target if target.startswith("http") else standin.base_url + target
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(url, data=data, method=method)
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                status, ctype, raw = resp.status, resp.headers.get("Content-Type", ""), resp.read()
        except urllib.error.HTTPError as err:
            status, ctype, raw = err.code, err.headers.get("Content-Type", ""), err.read()
        return Answer(status, ctype, json.loads(raw) if raw else None)

    return call
