"""A mailbox's servers must be on public addresses: at save (422) and again at connect time.

Otherwise the check that follows every save is a port prober and a login oracle for the
network Mailer runs in. The tests' own servers are on 127.0.0.1, which only the local stack's
and the tests' setting (MAILER_ALLOW_LOOPBACK_MAILBOXES, on in `aws_stack`) lets through.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
from mailer_core.base import network_addresses
from mailer_core.base.config import reset_settings

from tests.support.api_client import ApiClient
from tests.support.fixtures.core import PASSWORD, mailbox_body
from tests.support.smtp_servers import SmtpTestServer

DNS: dict[str, list[str]] = {}


@pytest.fixture(autouse=True)
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Names the tests control; any other name does not resolve."""
    DNS.clear()

    def resolve(host: str, port: int) -> list[str]:
        if host not in DNS:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return DNS[host]

    monkeypatch.setattr(network_addresses, "system_resolve", resolve)
    return DNS


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch, aws_stack: object) -> Callable[[], None]:
    """Settings as deployed: loopback not allowed."""

    def switch() -> None:
        monkeypatch.delenv("MAILER_ALLOW_LOOPBACK_MAILBOXES")
        reset_settings()

    return switch


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"smtp_host": "127.0.0.1"}, "smtp_host", "a loopback address (127.0.0.1)"),
        ({"smtp_host": "smtp.corp.example"}, "smtp_host", "a private address (10.20.0.5)"),
        ({"smtp_host": "169.254.169.254"}, "smtp_host", "link-local"),
        ({"imap_host": "imap.corp.example"}, "imap_host", "a private address (192.168.0.9)"),
        ({"imap_host": "localhost.example"}, "imap_host", "a loopback address"),
    ],
)
def test_a_server_on_a_non_public_address_is_refused_at_create(
    user: ApiClient, deployed: Callable[[], None], change: dict, field: str, words: str
) -> None:
    DNS.update(
        {
            "smtp.corp.example": ["8.8.8.8", "10.20.0.5"],
            "imap.corp.example": ["192.168.0.9"],
            "localhost.example": ["::1"],
        }
    )
    deployed()
    reply = user.post("/v1/mailboxes", mailbox_body(**change))

    assert reply.status == 422
    assert reply.json()["field"] == field
    assert words in reply.json()["message"]
    assert user.get("/v1/mailboxes").json()["items"] == []


def test_a_server_on_a_non_public_address_is_refused_at_update(
    user: ApiClient, deployed: Callable[[], None]
) -> None:
    deployed()
    created = user.post("/v1/mailboxes", mailbox_body()).json()  # smtp.example.com: unknown here
    url = f"/v1/mailboxes/{created['id']}"

    moved = user.patch(url, {"smtp_host": "192.168.1.1", "smtp_password": PASSWORD})
    imap = user.patch(url, {"imap_host": "10.0.0.2"})

    assert (moved.status, moved.json()["field"]) == (422, "smtp_host")
    assert (imap.status, imap.json()["field"]) == (422, "imap_host")
    assert user.get(url).json()["smtp_host"] == "smtp.example.com"
    assert user.get(url).json()["imap_host"] is None


def test_the_local_stacks_setting_lets_loopback_through_and_nothing_else(user: ApiClient) -> None:
    assert user.post("/v1/mailboxes", mailbox_body(smtp_host="127.0.0.1")).status == 201
    refused = user.post("/v1/mailboxes", mailbox_body(smtp_host="10.0.0.1"))
    assert (refused.status, refused.json()["field"]) == (422, "smtp_host")


def test_a_host_whose_dns_moves_to_loopback_after_saving_is_not_connected_to(
    user: ApiClient, deployed: Callable[[], None], smtp: SmtpTestServer
) -> None:
    # GIVEN a mailbox saved while its servers' names led to a public address
    deployed()
    DNS.update({"smtp.rebind.example": ["8.8.8.8"], "imap.rebind.example": ["8.8.4.4"]})
    body = mailbox_body(smtp, smtp_host="smtp.rebind.example", imap_host="imap.rebind.example")
    body["smtp_security"] = "ssl"  # plain SMTP is the local stack's, and this is "deployed"
    created = user.post("/v1/mailboxes", body)
    assert created.status == 201
    # WHEN the names now lead to this machine, where a server listens
    DNS.update({"smtp.rebind.example": ["127.0.0.1"], "imap.rebind.example": ["8.8.4.4", "127.0.0.1"]})
    checked = user.post(f"/v1/mailboxes/{created.json()['id']}/check")
    # THEN the check connects to neither and says why; the server heard nothing
    result = checked.json()["last_check"]
    assert checked.status == 200 and checked.json()["status"] == "red"
    assert result["smtp"]["cause"] == "address_not_allowed"
    assert "a loopback address (127.0.0.1)" in result["smtp"]["words"]
    assert result["imap"]["cause"] == "address_not_allowed"
    assert smtp.connections == 0


def test_the_connection_goes_to_the_address_that_was_checked(user: ApiClient, smtp: SmtpTestServer) -> None:
    # GIVEN a name only the checked resolver knows, leading to the test server (loopback allowed)
    DNS["smtp.local.example"] = [smtp.host]
    body = mailbox_body(smtp, smtp_host="smtp.local.example", smtp_login="anna@example.com")
    # THEN the check logs in there: the socket went to the address the rule checked
    reply = user.post("/v1/mailboxes", body)
    assert reply.status == 201
    assert reply.json()["last_check"]["smtp"]["ok"] is True
    assert smtp.connections == 1
