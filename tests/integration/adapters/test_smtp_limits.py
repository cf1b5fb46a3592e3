"""An SMTP server cannot hold a send worker past an operation's time limit."""

from __future__ import annotations

import time
from email.message import EmailMessage

import pytest
from mailer_core.adapters import smtp
from mailer_core.base.network_addresses import LOOPBACK_ALLOWED

from tests.support.hostile_servers import dripping_server, slow_data_server


def settings(port: int) -> smtp.SmtpSettings:
    return smtp.SmtpSettings(
        "127.0.0.1", port, "none", "", "", timeout=5.0, addresses=LOOPBACK_ALLOWED, time_limit=1.0
    )


def test_a_server_that_drips_its_greeting_is_cut_off_at_the_operations_limit() -> None:
    with dripping_server(interval=0.2, greeting=b"220 slow.example ESMTP") as server:
        started = time.monotonic()
        with pytest.raises(smtp.SmtpFailure) as raised:
            smtp.open_session(settings(server.port))
    assert raised.value.kind == "connection" and raised.value.stage == "connect"
    assert "did not finish within 1 s" in str(raised.value)
    assert time.monotonic() - started < 3.0  # each read stayed under the 5 s timeout


def test_a_server_that_drips_its_answer_to_the_data_is_cut_off_and_the_send_may_have_arrived() -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "anna@example.com", "ivan@example.com", "Hi"
    message.set_content("Hello")
    with slow_data_server(interval=0.2) as server:
        session = smtp.open_session(settings(server.port))
        started = time.monotonic()
        with pytest.raises(smtp.SmtpFailure) as raised:
            session.send(message, "anna@example.com", ["ivan@example.com"])
        session.close()
    assert (raised.value.kind, raised.value.stage) == ("connection", "data")  # the server may have it
    assert raised.value.outcome_unknown
    assert "did not finish within 1 s" in str(raised.value)
    assert time.monotonic() - started < 3.0
