"""The traffic light against real servers: green, gray and red, with the cause in words."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from mailer_core.store.models import MailboxModel

from devstack.imap_server import DovecotServer
from tests.support.api_client import ApiClient
from tests.support.fixtures.imap import ACCOUNT, SENDER, SMTP_PASSWORD, mailbox_body
from tests.support.imap_servers import ImapUser, new_user
from tests.support.smtp_servers import Credentials, SmtpTestServer, make_tls, smtp_server


def create(user: ApiClient, body: dict[str, Any]) -> dict[str, Any]:
    reply = user.post("/v1/mailboxes", body)
    assert reply.status == 201, reply.body  # saved even when the check fails
    return dict(reply.json())


def test_smtp_and_imap_working_make_the_mailbox_green(
    user: ApiClient, smtp: SmtpTestServer, imap_special: DovecotServer, special_user: ImapUser
) -> None:
    mailbox = create(user, mailbox_body(smtp, imap_special, special_user))

    assert mailbox["status"] == "green"
    check = mailbox["last_check"]
    assert check["smtp"]["ok"] and check["imap"]["ok"]
    assert check["imap"]["sent_folder"] == "Sent"
    assert "Sent" in check["imap"]["words"]
    assert smtp.messages == []  # a check sends nothing
    stored = MailboxModel.get(ACCOUNT, mailbox["id"])
    assert stored.status == "green" and stored.sent_folder == "Sent"
    assert stored.imap_uidvalidity and stored.imap_last_uid == 0  # bounce polling starts here
    assert user.get(f"/v1/mailboxes/{mailbox['id']}").json()["status"] == "green"


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_imap_over_tls_is_verified_against_the_trusted_ca(
    security: str,
    user: ApiClient,
    smtp: SmtpTestServer,
    imap_special: DovecotServer,
    special_user: ImapUser,
    trust_test_ca: str,
) -> None:
    port = imap_special.ssl_port if security == "ssl" else imap_special.port
    body = mailbox_body(smtp, imap_special, special_user, imap_security=security, imap_port=port)

    assert create(user, body)["status"] == "green"


def test_a_wrong_imap_password_makes_it_gray_and_says_why(
    user: ApiClient, smtp: SmtpTestServer, imap_special: DovecotServer, special_user: ImapUser
) -> None:
    body = mailbox_body(smtp, imap_special, special_user, imap_password="not-the-password")

    mailbox = create(user, body)

    assert mailbox["status"] == "gray"
    imap = mailbox["last_check"]["imap"]
    assert imap["cause"] == "auth"
    assert "Wrong login or password" in imap["words"]
    assert "AUTHENTICATIONFAILED" in imap["reply"]  # the server's own words
    assert "cannot file into Sent" in mailbox["last_check"]["summary"]


def test_without_imap_the_mailbox_is_gray(user: ApiClient, smtp: SmtpTestServer) -> None:
    mailbox = create(user, mailbox_body(smtp))

    assert mailbox["status"] == "gray"
    assert mailbox["last_check"]["imap"]["cause"] == "not_configured"


def test_a_refused_smtp_login_makes_it_red(
    user: ApiClient, imap_special: DovecotServer, special_user: ImapUser
) -> None:
    with smtp_server(authenticator=Credentials(SENDER, "another-password"), auth_require_tls=False) as smtp:
        mailbox = create(user, mailbox_body(smtp, imap_special, special_user))

    assert mailbox["status"] == "red"
    check = mailbox["last_check"]
    assert check["smtp"]["cause"] == "auth" and check["smtp"]["reply"].startswith("535")
    assert check["summary"].startswith("Cannot send. Wrong login or password")
    assert check["imap"]["ok"]  # IMAP is checked anyway


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()


@pytest.mark.parametrize(
    ("overrides", "cause", "words"),
    [
        ({"smtp_host": "127.0.0.1", "smtp_port": "closed"}, "port_closed", "Nothing answers on port"),
        ({"smtp_host": "mail.nowhere.invalid"}, "host_unknown", "does not exist"),
        ({"smtp_security": "ssl"}, "tls", "refused the secure connection"),
        ({"smtp_port": "silent"}, "timeout", "did not answer in time"),
    ],
    ids=["port closed", "host unknown", "TLS refused", "timeout"],
)
def test_smtp_failures_are_named_in_plain_words(
    overrides: dict[str, Any],
    cause: str,
    words: str,
    user: ApiClient,
    smtp: SmtpTestServer,
    silent_port: int,
    quick_checks: None,
) -> None:
    body = mailbox_body(smtp)
    for name, value in overrides.items():
        body[name] = {"closed": _free_port(), "silent": silent_port}.get(value, value)

    mailbox = create(user, body)

    assert mailbox["status"] == "red"
    assert mailbox["last_check"]["smtp"]["cause"] == cause
    assert words in mailbox["last_check"]["smtp"]["words"]
    assert mailbox["last_check"]["smtp"]["reply"]


def test_an_untrusted_certificate_is_named(user: ApiClient, tmp_path: Any) -> None:
    tls = make_tls(tmp_path)  # the server's CA is not trusted by Mailer here
    with smtp_server(
        ssl_context=tls.server_context,
        authenticator=Credentials(SENDER, SMTP_PASSWORD),
    ) as server:
        mailbox = create(user, mailbox_body(server, smtp_security="ssl"))

    assert mailbox["last_check"]["smtp"]["cause"] == "certificate"
    assert "certificate is not valid" in mailbox["last_check"]["smtp"]["words"]


def test_fixing_the_password_and_checking_again_turns_it_green(
    user: ApiClient, smtp: SmtpTestServer, imap_special: DovecotServer, special_user: ImapUser
) -> None:
    mailbox = create(user, mailbox_body(smtp, imap_special, special_user, smtp_password="typo"))
    assert mailbox["status"] == "red"

    fixed = user.patch(f"/v1/mailboxes/{mailbox['id']}", {"smtp_password": SMTP_PASSWORD})

    assert fixed.status == 200 and fixed.json()["status"] == "green"
    checked = user.post(f"/v1/mailboxes/{mailbox['id']}/check")
    assert checked.status == 200 and checked.json()["status"] == "green"
    assert smtp.messages == []


def test_a_change_that_is_not_about_connecting_does_not_check_again(
    user: ApiClient, smtp: SmtpTestServer
) -> None:
    mailbox = create(user, mailbox_body(smtp))
    connections = smtp.connections

    renamed = user.patch(f"/v1/mailboxes/{mailbox['id']}", {"sender_name": "Anna S."}).json()

    assert smtp.connections == connections
    assert renamed["last_check_at"] == mailbox["last_check_at"]


def test_the_check_of_another_users_mailbox_is_not_found(
    user: ApiClient, smtp: SmtpTestServer, imap_bare: DovecotServer
) -> None:
    mailbox = create(user, mailbox_body(smtp))
    other = ApiClient(secret=user.secret, audience=user.audience, account_id=ACCOUNT, user_id=999)

    assert other.post(f"/v1/mailboxes/{mailbox['id']}/check").status == 404


def test_imap_fields_are_validated_and_imap_can_be_turned_off(
    user: ApiClient, smtp: SmtpTestServer, imap_bare: DovecotServer
) -> None:
    imap_user = new_user(imap_bare)
    bad = user.post("/v1/mailboxes", mailbox_body(smtp, imap_bare, imap_user, imap_security="tls"))
    assert bad.status == 422 and bad.json()["field"] == "imap_security"
    mailbox = create(user, mailbox_body(smtp, imap_bare, imap_user))
    assert mailbox["status"] == "green" and mailbox["sent_folder"] is None  # a check creates nothing
    assert "no Sent folder yet" in mailbox["last_check"]["imap"]["words"]
    assert mailbox["imap_login"] == imap_user.login and mailbox["has_imap_password"]

    off = user.patch(f"/v1/mailboxes/{mailbox['id']}", {"imap_host": None}).json()

    assert off["status"] == "gray" and off["imap_host"] is None and not off["has_imap_password"]
    assert off["sent_folder"] is None
