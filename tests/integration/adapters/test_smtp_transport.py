"""The SMTP transport against real aiosmtpd servers on 127.0.0.1."""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
from collections.abc import Callable
from email.message import EmailMessage

import pytest
from mailer_core.adapters.smtp import (
    SendResult,
    SmtpFailure,
    SmtpPool,
    SmtpSession,
    SmtpSettings,
    classify,
    open_session,
)
from mailer_core.base.network_addresses import LOOPBACK_ALLOWED

from tests.support.smtp_servers import Credentials, ScriptedHandler, TlsMaterial, smtp_server

SENDER = "ivan@sender.test"  # the sender of conftest's make_message
MakeMessage = Callable[..., EmailMessage]
SettingsFor = Callable[..., SmtpSettings]
ANNA = "anna@client.test"


def send_once(settings: SmtpSettings, message: EmailMessage, to: list[str]) -> SendResult:
    session = open_session(settings)
    try:
        return session.send(message, SENDER, to)
    finally:
        session.close()


def failure_of(settings: SmtpSettings, message: EmailMessage, to: list[str]) -> SmtpFailure:
    with pytest.raises(SmtpFailure) as caught:
        send_once(settings, message, to)
    return caught.value


# --- a normal server -------------------------------------------------------------------


def test_message_arrives_with_envelope_and_cyrillic_headers_intact(
    server, settings_for: SettingsFor, make_message: MakeMessage
) -> None:
    # GIVEN a message to Anna with a Bcc copy to the archive (envelope only)
    message = make_message(subject="Счёт №42 — оплата до пятницы")

    result = send_once(settings_for(server), message, [ANNA, "archive@sender.test"])

    # THEN the server accepted it, and the reply is the server's own words
    assert result.reply == "250 2.0.0 Ok: queued as Q1"
    assert result.refused == {}
    (received,) = server.messages
    assert received.mail_from == SENDER
    assert received.rcpt_tos == (ANNA, "archive@sender.test")
    parsed = received.parsed()
    assert parsed["Subject"] == "Счёт №42 — оплата до пятницы"
    assert parsed["From"].addresses[0].display_name == "Иван Петров"
    assert b"archive@sender.test" not in received.data


def test_a_bcc_header_on_the_message_is_not_sent_and_the_callers_message_is_untouched(
    server, settings_for: SettingsFor, make_message: MakeMessage
) -> None:
    message = make_message()
    message["Bcc"] = "hidden@sender.test"

    send_once(settings_for(server), message, [ANNA, "hidden@sender.test"])

    assert b"hidden@sender.test" not in server.messages[0].data
    assert message["Bcc"] == "hidden@sender.test"


def test_one_refused_recipient_of_two_is_a_partial_success(settings_for: SettingsFor, make_message) -> None:
    handler = ScriptedHandler(rcpt_replies={"gone@client.test": "550 5.1.1 <gone@client.test>: no such user"})
    with smtp_server(handler) as server:
        result = send_once(settings_for(server), make_message(), [ANNA, "gone@client.test"])

        assert result.refused == {"gone@client.test": "550 5.1.1 <gone@client.test>: no such user"}
        assert server.messages[0].rcpt_tos == (ANNA,)


def test_all_recipients_refused_raises_with_the_worst_code(settings_for: SettingsFor, make_message) -> None:
    handler = ScriptedHandler(
        rcpt_replies={
            "busy@client.test": "450 4.2.1 mailbox busy",
            "gone@client.test": "550 5.1.1 no such user",
        }
    )
    with smtp_server(handler) as server:
        failure = failure_of(settings_for(server), make_message(), ["busy@client.test", "gone@client.test"])

        assert (failure.kind, failure.code, failure.retryable) == ("permanent", 550, False)
        assert str(failure) == "550 5.1.1 no such user"
        assert server.messages == []


def test_a_refused_sender_is_permanent(settings_for: SettingsFor, make_message) -> None:
    handler = ScriptedHandler(mail_reply="553 5.7.1 Sender address rejected: not owned by user")
    with smtp_server(handler) as server:
        failure = failure_of(settings_for(server), make_message(), [ANNA])

    assert (failure.kind, failure.code, failure.stage) == ("permanent", 553, "envelope")
    assert failure.reply == "5.7.1 Sender address rejected: not owned by user"


def test_550_to_the_message_is_permanent_with_the_servers_words(
    settings_for: SettingsFor, make_message
) -> None:
    handler = ScriptedHandler(data_replies=["550 5.7.1 Сообщение отклонено: спам"])
    with smtp_server(handler) as server:
        failure = failure_of(settings_for(server), make_message(), [ANNA])

    assert (failure.kind, failure.code, failure.retryable, failure.stage) == ("permanent", 550, False, "data")
    assert not failure.outcome_unknown  # an answer, however bad, is an outcome
    assert str(failure) == "550 5.7.1 Сообщение отклонено: спам"


def test_451_is_temporary_and_the_next_pool_send_goes_through(
    settings_for: SettingsFor, make_message
) -> None:
    handler = ScriptedHandler(data_replies=["451 4.7.1 Greylisted, try again later"])
    with smtp_server(handler) as server, SmtpPool() as pool:
        settings = settings_for(server)
        with pytest.raises(SmtpFailure) as caught:
            pool.send("mailbox-1", settings, make_message(), SENDER, [ANNA])
        assert (caught.value.kind, caught.value.code, caught.value.retryable) == ("temporary", 451, True)
        assert server.messages == []

        # WHEN the caller tries again later
        result = pool.send("mailbox-1", settings, make_message(), SENDER, [ANNA])

        # THEN it goes through on a fresh connection (the failed one was dropped)
        assert result.reply.startswith("250 ")
        assert len(server.messages) == 1
        assert server.connections == 2


def test_a_hang_up_during_data_is_a_retryable_connection_failure_not_retried_by_the_pool(
    settings_for: SettingsFor, make_message: MakeMessage
) -> None:
    with smtp_server(ScriptedHandler(drop_on_data=True)) as server, SmtpPool() as pool:
        settings = settings_for(server)
        pool.close()  # nothing open yet; closing an empty pool is harmless
        with pytest.raises(SmtpFailure) as caught:
            pool.send("mailbox-1", settings, make_message(), SENDER, [ANNA])

        assert (caught.value.kind, caught.value.retryable, caught.value.stage) == ("connection", True, "data")
        # the whole message went out before the hang-up: the server may have it
        assert (caught.value.handed_over, caught.value.outcome_unknown) == (True, True)
        assert server.handler.data_attempts == 1  # the pool left the decision to the caller
        assert server.connections == 1


def test_nobody_listening_is_a_connection_failure(settings_for: SettingsFor) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = SmtpSettings("127.0.0.1", port, "none", "", "", timeout=2.0, addresses=LOOPBACK_ALLOWED)

    with pytest.raises(SmtpFailure) as caught:
        open_session(settings)

    assert (caught.value.kind, caught.value.retryable, caught.value.code) == ("connection", True, None)


# --- authentication --------------------------------------------------------------------


def test_a_wrong_password_is_an_auth_failure_that_never_shows_the_password(
    settings_for: SettingsFor, caplog: pytest.LogCaptureFixture
) -> None:
    credentials = Credentials("ivan@sender.test", "right-password")
    caplog.set_level(logging.DEBUG)
    with smtp_server(authenticator=credentials, auth_require_tls=False) as server:
        settings = settings_for(server, login="ivan@sender.test", password="s3cret-wrong")

        with pytest.raises(SmtpFailure) as caught:
            open_session(settings)

    failure = caught.value
    assert (failure.kind, failure.code, failure.retryable) == ("auth", 535, False)
    assert credentials.attempts >= 1
    for text in (str(failure), repr(failure), repr(failure.args), repr(settings), caplog.text):
        assert "s3cret" not in text


@pytest.mark.parametrize("password", ["right-password", "пароль-кириллицей"], ids=["ascii", "utf-8"])
def test_the_right_password_logs_in_and_sends(
    password: str, settings_for: SettingsFor, make_message: MakeMessage
) -> None:
    credentials = Credentials("ivan@sender.test", password)
    with smtp_server(authenticator=credentials, auth_require_tls=False) as server:
        settings = settings_for(server, login="ivan@sender.test", password=password)
        send_once(settings, make_message(), [ANNA])

        assert credentials.accepted == 1
        assert len(server.messages) == 1


def test_a_wrong_non_ascii_password_is_an_auth_failure(settings_for: SettingsFor) -> None:
    credentials = Credentials("ivan@sender.test", "пароль")
    with (
        smtp_server(authenticator=credentials, auth_require_tls=False) as server,
        pytest.raises(SmtpFailure) as caught,
    ):
        open_session(settings_for(server, login="ivan@sender.test", password="не-тот-пароль"))

    assert (caught.value.kind, caught.value.code) == ("auth", 535)
    assert "не-тот" not in str(caught.value)


def test_a_login_on_a_server_without_auth_is_an_auth_failure(server, settings_for: SettingsFor) -> None:
    with pytest.raises(SmtpFailure) as caught:
        open_session(settings_for(server, login="ivan@sender.test", password="pw"))
    assert caught.value.kind == "auth"


# --- TLS -------------------------------------------------------------------------------


def test_implicit_tls_verifies_against_the_given_ca(
    tls: TlsMaterial, settings_for: SettingsFor, make_message: MakeMessage
) -> None:
    with smtp_server(ssl_context=tls.server_context) as server:
        send_once(settings_for(server, "ssl", ca_file=tls.ca_file), make_message(), [ANNA])
        assert len(server.messages) == 1

        failure = failure_of(settings_for(server, "ssl"), make_message(), [ANNA])
        assert (failure.kind, failure.retryable) == ("tls", False)
        assert "certificate verify failed" in failure.reply
        assert len(server.messages) == 1


def test_starttls_verifies_against_the_given_ca_and_then_logs_in(
    tls: TlsMaterial, settings_for: SettingsFor, make_message: MakeMessage
) -> None:
    credentials = Credentials("ivan@sender.test", "right-password")
    with smtp_server(
        tls_context=tls.server_context, require_starttls=True, authenticator=credentials
    ) as server:
        good = settings_for(
            server, "starttls", login="ivan@sender.test", password="right-password", ca_file=tls.ca_file
        )
        send_once(good, make_message(), [ANNA])
        assert len(server.messages) == 1
        assert credentials.accepted == 1  # AUTH happened inside TLS (aiosmtpd's auth_require_tls)

        failure = failure_of(settings_for(server, "starttls"), make_message(), [ANNA])
        assert (failure.kind, failure.retryable) == ("tls", False)


def test_starttls_required_but_not_offered_is_a_tls_failure(server, settings_for: SettingsFor) -> None:
    with pytest.raises(SmtpFailure) as caught:
        open_session(settings_for(server, "starttls"))
    assert caught.value.kind == "tls"
    assert server.open_connections(wait_for=0) == 0  # the half-open connection was closed


def test_a_missing_ca_file_is_a_tls_failure(server, settings_for: SettingsFor, tmp_path) -> None:
    with pytest.raises(SmtpFailure) as caught:
        open_session(settings_for(server, "ssl", ca_file=str(tmp_path / "missing.pem")))
    assert caught.value.kind == "tls"


# --- the pool --------------------------------------------------------------------------


def test_pool_sends_a_batch_over_one_connection_and_quits_on_close(
    server, settings_for: SettingsFor, make_message: MakeMessage
) -> None:
    settings = settings_for(server)
    with SmtpPool() as pool:
        for n in range(3):
            pool.send("mailbox-1", settings, make_message(subject=f"Письмо {n}"), SENDER, [ANNA])
        assert server.connections == 1

    assert [m.parsed()["Subject"] for m in server.messages] == ["Письмо 0", "Письмо 1", "Письмо 2"]
    assert server.open_connections(wait_for=0) == 0


def test_pool_keeps_one_connection_per_mailbox(server, settings_for: SettingsFor, make_message) -> None:
    settings = settings_for(server)
    with SmtpPool() as pool:
        for key in ("mailbox-1", "mailbox-2", "mailbox-1", "mailbox-2"):
            pool.send(key, settings, make_message(), SENDER, [ANNA])
        assert server.connections == 2


def test_pool_reconnects_once_when_the_server_dropped_the_idle_connection(
    server, settings_for: SettingsFor, make_message: MakeMessage
) -> None:
    settings = settings_for(server)
    with SmtpPool() as pool:
        pool.send("mailbox-1", settings, make_message(subject="первое"), SENDER, [ANNA])
        # GIVEN the server hung up while the connection sat idle
        server.drop_connections()

        result = pool.send("mailbox-1", settings, make_message(subject="второе"), SENDER, [ANNA])

        assert result.reply.startswith("250 ")
        assert [m.parsed()["Subject"] for m in server.messages] == ["первое", "второе"]
        assert server.connections == 2


def test_a_session_knows_when_the_server_hung_up(server, settings_for: SettingsFor) -> None:
    session = open_session(settings_for(server))
    try:
        assert session.is_alive()
        server.drop_connections()
        assert not session.is_alive()
    finally:
        session.close()  # closing a dead session does not raise


def test_pool_reconnects_when_the_mailbox_settings_changed(server, settings_for, make_message) -> None:
    with SmtpPool() as pool:
        pool.send("mailbox-1", settings_for(server), make_message(), SENDER, [ANNA])
        pool.send("mailbox-1", settings_for(server, login=""), make_message(), SENDER, [ANNA])  # same
        assert server.connections == 1
        changed = SmtpSettings(
            server.host, server.port, "none", "", "", timeout=7.0, addresses=LOOPBACK_ALLOWED
        )
        pool.send("mailbox-1", changed, make_message(), SENDER, [ANNA])
        assert server.connections == 2


class FakeSession(SmtpSession):
    """A session whose sends fail as scripted: the server's hang-up at a chosen stage."""

    def __init__(self, failures: list[SmtpFailure]) -> None:
        self.failures = failures
        self.sent = 0
        self.closed = False

    def send(self, message: EmailMessage, from_addr: str, to_addrs, on_data_sent=None) -> SendResult:  # type: ignore[override]
        if self.failures:
            raise self.failures.pop(0)
        self.sent += 1
        return SendResult(reply="250 ok", refused={})

    def is_alive(self) -> bool:
        return True  # NOOP passed, but the server hangs up right after

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(
    ("stage", "retried"),
    [("envelope", True), ("data", False)],
)
def test_pool_repeats_a_send_only_when_a_reused_session_died_before_the_data(
    stage: str, retried: bool, make_message: MakeMessage
) -> None:
    hang_up = SmtpFailure("connection", "Connection unexpectedly closed", stage=stage)  # type: ignore[arg-type]
    opened: list[FakeSession] = []

    def connect(settings: SmtpSettings) -> SmtpSession:
        opened.append(FakeSession([]))
        return opened[-1]

    settings = SmtpSettings("127.0.0.1", 2525, "none", "", "")
    with SmtpPool(connect) as pool:
        # GIVEN a first send opened a session, and the server silently dropped it
        pool.send("mailbox-1", settings, make_message(), SENDER, [ANNA])
        opened[0].failures.append(hang_up)

        if retried:
            pool.send("mailbox-1", settings, make_message(), SENDER, [ANNA])
            assert len(opened) == 2
            assert opened[1].sent == 1
        else:
            with pytest.raises(SmtpFailure):
                pool.send("mailbox-1", settings, make_message(), SENDER, [ANNA])
            assert len(opened) == 1
        assert opened[0].closed


def test_pool_does_not_retry_a_fresh_session_that_hangs_up(make_message: MakeMessage) -> None:
    hang_up = SmtpFailure("connection", "Connection unexpectedly closed", stage="envelope")
    opened: list[FakeSession] = []

    def connect(settings: SmtpSettings) -> SmtpSession:
        opened.append(FakeSession([hang_up]))
        return opened[-1]

    with SmtpPool(connect) as pool, pytest.raises(SmtpFailure):
        pool.send(
            "mailbox-1", SmtpSettings("127.0.0.1", 2525, "none", "", ""), make_message(), SENDER, [ANNA]
        )
    assert len(opened) == 1 and opened[0].closed


# --- classification of low-level errors ------------------------------------------------


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (TimeoutError("timed out"), "connection"),
        (socket.gaierror(-2, "Name or service not known"), "connection"),
        (ConnectionResetError(104, "Connection reset by peer"), "connection"),
        (BrokenPipeError(32, "Broken pipe"), "connection"),
        (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), "connection"),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), "tls"),
        (ssl.SSLError(1, "wrong version number"), "tls"),
        (smtplib.SMTPAuthenticationError(535, b"5.7.8 Authentication credentials invalid"), "auth"),
        (smtplib.SMTPSenderRefused(421, b"4.7.0 Try again later", SENDER), "temporary"),
        (smtplib.SMTPDataError(554, b"5.7.1 \xd0\xbe\xd1\x82\xff rejected"), "permanent"),
    ],
)
def test_classify(error: BaseException, kind: str) -> None:
    failure = classify(error)
    assert failure.kind == kind
    assert failure.retryable == (kind in ("temporary", "connection"))
    assert failure.reply  # always says something


def test_reply_bytes_are_decoded_with_replacement() -> None:
    failure = classify(smtplib.SMTPDataError(554, b"5.7.1 \xd0\xbe\xd1\x82\xff rejected"))
    assert str(failure) == "554 5.7.1 от\ufffd rejected"


# --- how the data goes out ----------------------------------------------------------------


class RecordingSMTP(smtplib.SMTP):
    """smtplib's client, noting each write and each wait for a reply."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.events: list[tuple[str, bytes]] = []
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def send(self, s: bytes | str) -> None:
        self.events.append(("write", s if isinstance(s, bytes) else s.encode()))
        super().send(s)

    def getreply(self) -> tuple[int, bytes]:
        self.events.append(("reply", b""))
        return super().getreply()


@pytest.mark.parametrize("attachment_bytes", [0, 3 * 1024 * 1024])
def test_the_last_piece_of_data_goes_out_with_the_final_dot_and_then_the_caller_hears_of_it(
    server, make_message: MakeMessage, attachment_bytes: int
) -> None:
    # GIVEN a message (with a 3 MB attachment: sent in 1 MB pieces) with a line that needs dot-stuffing
    from mailer_core.adapters import mime

    message = make_message()
    message.get_payload()[0].set_content(".hidden line\nsecond line\n")  # type: ignore[index]
    if attachment_bytes:
        message.add_attachment(b"\x00" * attachment_bytes, maintype="application", subtype="octet-stream")
    expected = mime.write(message).read_bytes()
    client = RecordingSMTP(server.host, server.port, timeout=5)
    client.ehlo()
    session = SmtpSession(client)

    # WHEN it is sent, with a callback for the moment the data is out
    result = session.send(
        message, SENDER, [ANNA], on_data_sent=lambda: client.events.append(("data sent", b""))
    )
    session.close()

    # THEN the final dot shares its write with the end of the message (a lone dot would wait
    # for the server's delayed ACK), the callback comes right after it, before the answer
    assert result.reply.startswith("250")
    writes = [data for kind, data in client.events if kind == "write"]
    data_at = next(i for i, w in enumerate(writes) if w.upper().startswith(b"DATA"))
    pieces = writes[data_at + 1 : writes.index(b"quit\r\n")]
    assert len(pieces) == -(-len(expected) // (1024 * 1024))  # one write per MB started, no more
    assert pieces[-1].endswith(expected.rstrip(b"\r\n").rsplit(b"\r\n", 1)[-1] + b"\r\n.\r\n")
    kinds = [kind for kind, _ in client.events]
    sent_dot = kinds.index("data sent")
    assert kinds[sent_dot - 1 : sent_dot + 2] == ["write", "data sent", "reply"]
    # AND the server got the message exactly, dot-stuffing undone
    assert b"..hidden line" in b"".join(pieces)

    def lines(data: bytes) -> list[bytes]:
        return data.replace(b"\r\n", b"\n").rstrip(b"\n").split(b"\n")

    assert lines(server.messages[0].data) == lines(expected)
