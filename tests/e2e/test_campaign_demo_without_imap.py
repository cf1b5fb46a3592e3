"""Without Dovecot the local campaign still plays: the bounce step is skipped, with the reason."""

from __future__ import annotations

import pytest

from devstack import system as local_system
from devstack.campaign_demo import BOUNCES, OPTS_OUT, expected_steps, play_campaign
from devstack.system import LocalSystem, call

pytestmark = pytest.mark.e2e
NO_DOVECOT = "Dovecot is switched off for this test"


def test_the_campaign_plays_and_says_why_the_bounce_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_system, "unavailable_reason", lambda: NO_DOVECOT)
    lines: list[str] = []
    with LocalSystem() as system:
        assert system.imap is None

        steps = play_campaign(system, say=lines.append)

        assert [s.ok for s in steps] == [True] * expected_steps(system) == [True] * 7, "\n".join(lines)
        assert not any(s.title.startswith("5.") for s in steps)
        assert any("the hard bounce is skipped" in line and NO_DOVECOT in line for line in lines)
        status, listed = call("GET", f"{system.stack.api_url}/v1/suppressions", system.widget_token())
        assert status == 200
        assert [row["address"] for row in listed["items"]] == [OPTS_OUT]
        assert BOUNCES not in "\n".join(line for line in lines if line.startswith("  recipient"))
