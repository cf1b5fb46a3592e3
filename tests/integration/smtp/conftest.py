"""Fixtures for the SMTP transport tests: real aiosmtpd servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from mailer_core.adapters.mime import OutgoingEmail, build_message, make_message_id
from mailer_core.adapters.smtp import Security, SmtpSettings

from tests.support.smtp_servers import SmtpTestServer, TlsMaterial, make_tls, smtp_server

SENDER = "ivan@sender.test"


@pytest.fixture
def server() -> Iterator[SmtpTestServer]:
    """A plain server that accepts and records everything."""
    with smtp_server() as running:
        yield running


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def settings_for() -> Callable[..., SmtpSettings]:
    """`settings_for(server, security, login=, password=, ca_file=)`: settings to reach `server`."""

    def settings(
        server: SmtpTestServer,
        security: Security = "none",
        *,
        login: str = "",
        password: str = "",
        ca_file: str = "",
    ) -> SmtpSettings:
        return SmtpSettings(
            host=server.host,
            port=server.port,
            security=security,
            login=login,
            password=password,
            timeout=5.0,
            ca_file=ca_file,
        )

    return settings


@pytest.fixture
def make_message() -> Callable[..., EmailMessage]:
    def make(subject: str = "Предложение", to: tuple[str, ...] = ("anna@client.test",)) -> EmailMessage:
        return build_message(
            OutgoingEmail(
                sender_name="Иван Петров",
                sender_email=SENDER,
                to=to,
                subject=subject,
                html="<p>Здравствуйте! <a href='https://offer.test/1'>Предложение</a></p>",
                message_id=make_message_id("01JTEST", SENDER),
                date=datetime(2026, 11, 24, 9, 0, tzinfo=UTC),
            )
        )

    return make
