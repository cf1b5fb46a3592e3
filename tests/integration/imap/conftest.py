"""Real Dovecot IMAP servers and real SMTP servers on 127.0.0.1 for the mailbox tests.

Three Dovecot servers are started once per test process (xdist worker) and shared by its
tests, each test using users of its own:

- `imap_special`: a "Sent" folder marked \\Sent (RFC 6154), STARTTLS and implicit TLS with a
  throwaway CA (`tls.ca_file`);
- `imap_russian`: no SPECIAL-USE; every user has a folder "Отправленные" (named by Dovecot);
- `imap_bare`: no SPECIAL-USE and no folder but INBOX.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import trustme
from mailer_core.base.config import reset_settings

from devstack.imap_server import DovecotServer
from tests.conftest import TEST_AUDIENCE, TEST_SECRET
from tests.support.api_client import ApiClient
from tests.support.imap_servers import ImapUser, new_user, require_dovecot
from tests.support.smtp_servers import Credentials, SmtpTestServer, smtp_server

ACCOUNT = 31000077
SENDER = "anna@example.com"
SMTP_PASSWORD = "smtp-app-password"


@dataclass(frozen=True)
class Tls:
    ca_file: str
    cert_pem: str
    key_pem: str


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("imap-tls")
    ca_file = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    chain = "".join(blob.bytes().decode() for blob in cert.cert_chain_pems)
    return Tls(str(ca_file), chain, cert.private_key_pem.bytes().decode())


def _server(**options: Any) -> Iterator[DovecotServer]:
    require_dovecot()
    server = DovecotServer(**options).start()
    try:
        yield server
    finally:
        server.stop(wait=False)


@pytest.fixture(scope="session")
def imap_special(tls: Tls) -> Iterator[DovecotServer]:
    yield from _server(special_use_sent="Sent", tls_cert_pem=tls.cert_pem, tls_key_pem=tls.key_pem)


@pytest.fixture(scope="session")
def imap_russian() -> Iterator[DovecotServer]:
    yield from _server(special_use_sent=None, folders=("Отправленные",))


@pytest.fixture(scope="session")
def imap_bare() -> Iterator[DovecotServer]:
    yield from _server(special_use_sent=None)


@pytest.fixture
def trust_test_ca(tls: Tls, monkeypatch: pytest.MonkeyPatch, aws_stack: Any) -> str:
    """Mailer trusts the throwaway CA (for SMTP and IMAP), as MAILER_SMTP_CA_FILE says."""
    monkeypatch.setenv("MAILER_SMTP_CA_FILE", tls.ca_file)
    reset_settings()
    return tls.ca_file


@pytest.fixture
def quick_checks(monkeypatch: pytest.MonkeyPatch, aws_stack: Any) -> None:
    """Checks give up after half a second per step (for the timeout cases)."""
    monkeypatch.setenv("MAILER_MAILBOX_CHECK_TIMEOUT_SECONDS", "0.5")
    reset_settings()


@pytest.fixture
def smtp() -> Iterator[SmtpTestServer]:
    with smtp_server(authenticator=Credentials(SENDER, SMTP_PASSWORD), auth_require_tls=False) as server:
        yield server


@pytest.fixture
def user(aws_stack: Any) -> ApiClient:
    return ApiClient(secret=TEST_SECRET, audience=TEST_AUDIENCE, account_id=ACCOUNT, user_id=701)


@pytest.fixture
def admin(aws_stack: Any) -> ApiClient:
    return ApiClient(
        secret=TEST_SECRET, audience=TEST_AUDIENCE, account_id=ACCOUNT, user_id=700, is_admin=True
    )


def mailbox_body(
    smtp: SmtpTestServer,
    imap: DovecotServer | None = None,
    imap_user: ImapUser | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A mailbox on the test SMTP server (plain text, as the local stack allows) and, given one,
    an IMAP user of a Dovecot server (its own password: the SMTP one differs)."""
    body: dict[str, Any] = {
        "sender_name": "Анна Смирнова",
        "sender_email": SENDER,
        "smtp_host": smtp.host,
        "smtp_port": smtp.port,
        "smtp_security": "none",
        "smtp_password": SMTP_PASSWORD,
        "is_default": True,
        "rate_per_second": 100,
    }
    if imap is not None and imap_user is not None:
        body.update(
            imap_host=imap.host,
            imap_port=imap.port,
            imap_security="none",
            imap_login=imap_user.login,
            imap_password=imap_user.password,
        )
    body.update(overrides)
    return body


@pytest.fixture
def special_user(imap_special: DovecotServer) -> ImapUser:
    return new_user(imap_special, "special")
