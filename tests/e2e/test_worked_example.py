"""The local stack plays the worked example end to end, as `make demo` does."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mailer_core.clock import Clock

from devstack import kommo_seed
from devstack.example import LocalSystem, call, play_example

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def system() -> Iterator[LocalSystem]:
    with LocalSystem() as running:
        yield running


def test_the_example_happens_step_by_step(system: LocalSystem) -> None:
    lines: list[str] = []

    steps = play_example(system, say=lines.append)

    assert [s.ok for s in steps] == [True, True, True, True], lines
    received = [m for m in system.sink.messages if "Коммерческое предложение" in m.subject]
    assert len(received) == 1
    email = received[0]
    assert list(email.rcpt_tos) == ["ivan.petrov@example.com"]
    assert "Мария Менеджер" in email.from_
    assert email.text and "Здравствуйте" in email.text  # the text alternative
    # the recipients came from the Kommo stand-in: the lead was read with its contacts
    paths = [r.path for r in system.kommo.requests]
    assert any(p.startswith(f"/api/v4/leads/{kommo_seed.LEAD_OFFER}") for p in paths)


def test_the_api_answers_through_the_local_gateway(system: LocalSystem) -> None:
    api = system.stack.api_url
    assert call("GET", f"{api}/health", None) == (200, {"status": "ok"})
    status, body = call("GET", f"{api}/v1/messages", None)
    assert status == 401 and body["error"] == "unauthorized"
    status, listed = call("GET", f"{api}/v1/messages?status=sent", system.widget_token())
    assert status == 200 and all(m["status"] == "sent" for m in listed["items"])


def test_a_scheduled_email_is_released_by_the_scheduler_loop(system: LocalSystem) -> None:
    api, token = system.stack.api_url, system.widget_token()
    send_at = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    status, message = call(
        "POST",
        f"{api}/v1/messages",
        token,
        {"to": ["later@example.com"], "subject": "Tomorrow", "send_at": send_at},
    )
    assert status == 202 and message["status"] == "scheduled"

    system.stack.scheduler.clock = _Shifted(days=1, seconds=60)  # the scheduler's clock reaches send_at
    system.stack.scheduler.tick()
    system.sink.wait_for(lambda m: m.subject == "Tomorrow", timeout=30)
    system.stack.drain(timeout=30)
    status, current = call("GET", f"{api}/v1/messages/{message['id']}", token)
    assert current["status"] == "sent"


class _Shifted(Clock):
    """A clock running ahead of the wall clock, so a schedule for tomorrow is due now."""

    def __init__(self, **delta: float) -> None:
        self.delta = timedelta(**delta)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.delta


def test_make_demo_exits_zero_when_every_step_happened() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    result = subprocess.run(
        [sys.executable, "-m", "devstack", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Example complete: 4 of 4 steps happened." in result.stdout
