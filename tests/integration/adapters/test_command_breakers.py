"""A login or password with CR, LF or NUL never reaches a server: SMTP and IMAP refuse it first.

IMAP's LOGIN sends the password inside a quoted string as it is, so a line break in it would
end the command and start one of the password's choosing; NUL shifts AUTH PLAIN's parts.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from mailer_core.adapters import imap, smtp

BREAKERS = ["s3cret\r\nA2 DELETE INBOX", "s3cret\nRSET", "s3cret\r", "anna\x00admin"]


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A port that takes connections but never answers: any client that connected stays queued."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        sock.setblocking(False)
        yield sock


def nobody_connected(listener: socket.socket) -> bool:
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


@pytest.mark.parametrize("bad", BREAKERS)
@pytest.mark.parametrize("where", ["login", "password"])
def test_smtp_refuses_before_connecting(listener: socket.socket, where: str, bad: str) -> None:
    fields = {"login": "anna", "password": "s3cret", where: bad}
    settings = smtp.SmtpSettings("127.0.0.1", listener.getsockname()[1], "none", timeout=2.0, **fields)

    with pytest.raises(smtp.SmtpFailure) as refused:
        smtp.open_session(settings)

    assert refused.value.kind == "auth"
    assert "line break or NUL" in str(refused.value)
    assert bad not in str(refused.value)
    assert nobody_connected(listener)


@pytest.mark.parametrize("bad", BREAKERS)
@pytest.mark.parametrize("where", ["login", "password"])
def test_imap_refuses_before_connecting(listener: socket.socket, where: str, bad: str) -> None:
    fields = {"login": "anna", "password": "s3cret", where: bad}
    settings = imap.ImapSettings("127.0.0.1", listener.getsockname()[1], "none", timeout=2.0, **fields)

    with pytest.raises(imap.ImapFailure) as refused:
        imap.open_session(settings)

    assert refused.value.kind == "auth"
    assert "line break or NUL" in str(refused.value)
    assert bad not in str(refused.value)
    assert nobody_connected(listener)
