"""An IMAP server cannot hold a session past its time, nor make it read without end."""

from __future__ import annotations

import time

import pytest
from mailer_core.adapters import imap
from mailer_core.base.network_addresses import LOOPBACK_ALLOWED

from tests.support.hostile_servers import boasting_server, dripping_server


def settings(port: int, **limits: object) -> imap.ImapSettings:
    return imap.ImapSettings(
        "127.0.0.1", port, "none", "anna", "secret", timeout=5.0, addresses=LOOPBACK_ALLOWED, **limits
    )  # type: ignore[arg-type]


def test_a_server_that_drips_its_greeting_is_cut_off_at_the_sessions_time_limit() -> None:
    with dripping_server(interval=0.2) as server:
        started = time.monotonic()
        with pytest.raises(imap.ImapFailure) as raised:
            imap.open_session(settings(server.port, time_limit=1.0))
        took = time.monotonic() - started
    assert raised.value.kind == "connection"
    assert "did not finish within 1 s" in str(raised.value)
    assert took < 3.0  # every single read stayed under the 5 s timeout; the limit ended it


def test_a_literal_larger_than_the_limit_is_refused_before_it_is_read() -> None:
    with boasting_server(announced=400 * 1024 * 1024) as server:
        session = imap.open_session(settings(server.port, max_literal=1024 * 1024))
        session.examine("INBOX")
        started = time.monotonic()
        with pytest.raises(imap.ImapFailure) as raised:
            session.message(1)
        session.close()
    assert raised.value.kind == "connection"
    assert "419,430,400 bytes at once" in str(raised.value)
    assert time.monotonic() - started < 2.0  # not waiting for 400 MB that never come
