"""Presets, the check's words, and recognising delivery reports: rules that need no server."""

from __future__ import annotations

import smtplib
import socket
import ssl
from pathlib import Path

import pytest
from mailer_core.adapters import imap, smtp
from mailer_core.mailboxes import presets
from mailer_core.mailboxes.check import _cause, _words

DSN = Path(__file__).resolve().parents[2] / "integration" / "bounces" / "dsn"
OUR_ID = "<01JDX0000000000000000000AB@example.com>"


# -- presets ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "key", "smtp_host", "port", "imap_host"),
    [
        ("anna@gmail.com", "google", "smtp.gmail.com", 465, "imap.gmail.com"),
        ("Anna@Yandex.RU", "yandex", "smtp.yandex.ru", 465, "imap.yandex.ru"),
        ("anna@ya.ru", "yandex", "smtp.yandex.ru", 465, "imap.yandex.ru"),
        ("anna@bk.ru", "mailru", "smtp.mail.ru", 465, "imap.mail.ru"),
        ("anna@hotmail.com", "outlook", "smtp-mail.outlook.com", 587, "outlook.office365.com"),
        ("anna@icloud.com", "icloud", "smtp.mail.me.com", 587, "imap.mail.me.com"),
        ("anna@zohomail.eu", "zoho_eu", "smtp.zoho.eu", 465, "imap.zoho.eu"),
    ],
)
def test_public_mail_services_are_known_by_the_domain(
    address: str, key: str, smtp_host: str, port: int, imap_host: str
) -> None:
    preset = presets.for_email(address)
    assert preset is not None and preset.key == key
    fields = preset.fields()
    assert (fields["smtp_host"], fields["smtp_port"], fields["imap_host"]) == (smtp_host, port, imap_host)
    assert fields["smtp_security"] == ("ssl" if port == 465 else "starttls")


def test_a_company_domain_matches_nothing_but_every_provider_is_offered() -> None:
    suggestion = presets.suggest("anna@company.example")
    assert suggestion["match"] is None
    keys = {p["key"] for p in suggestion["providers"]}
    assert {"google", "microsoft365", "yandex", "mailru", "zoho", "icloud", "sendpulse"} <= keys
    relay = next(p for p in suggestion["providers"] if p["key"] == "sendpulse")
    assert "imap_host" not in relay["fields"] and "gray" in relay["hint"]


def test_providers_that_need_app_passwords_say_how_and_those_filing_sent_mail_skip_the_copy() -> None:
    google = presets.for_email("a@gmail.com")
    assert google is not None and google.app_password and "App passwords" in google.hint
    assert google.fields()["append_to_sent"] is False
    yandex = presets.for_email("a@yandex.ru")
    assert yandex is not None and yandex.fields()["append_to_sent"] is True


def test_fill_only_adds_what_the_user_left_out_and_never_guesses_for_their_own_server() -> None:
    filled = presets.fill({"sender_email": "a@mail.ru", "smtp_password": "x", "imap_port": 143}, "a@mail.ru")
    assert filled["smtp_host"] == "smtp.mail.ru" and filled["imap_port"] == 143
    own = {"sender_email": "a@mail.ru", "smtp_host": "relay.company.example"}
    assert presets.fill(own, "a@mail.ru") == own
    assert presets.fill({"smtp_password": "x"}, "a@company.example") == {"smtp_password": "x"}


# -- the check's words ------------------------------------------------------------------------


def _raised(error: BaseException, wrap: type[Exception] | None = None) -> BaseException:
    """`error` as it reaches the check: wrapped the way the transports wrap it."""
    try:
        try:
            raise error
        except BaseException as inner:
            if wrap is smtp.SmtpFailure:
                raise smtp.classify(inner) from None
            if wrap is imap.ImapFailure:
                raise imap.classify(inner) from None
            raise
    except BaseException as outer:
        return outer


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (socket.gaierror(-2, "Name or service not known"), "host_unknown"),
        (ConnectionRefusedError(111, "Connection refused"), "port_closed"),
        (TimeoutError("timed out"), "timeout"),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), "certificate"),
        (ssl.SSLError(1, "wrong version number"), "tls"),
        (smtplib.SMTPAuthenticationError(535, b"5.7.8 bad credentials"), "auth"),
        (smtplib.SMTPResponseException(554, b"go away"), "refused"),
    ],
)
def test_smtp_errors_are_classified_by_what_lies_beneath(error: BaseException, cause: str) -> None:
    failure = _raised(error, smtp.SmtpFailure)
    assert isinstance(failure, smtp.SmtpFailure)
    assert _cause(failure.kind, failure) == cause


def test_a_timeout_inside_a_disconnect_is_still_a_timeout() -> None:
    # smtplib turns a read timeout into SMTPServerDisconnected("... timed out") from it.
    disconnect = smtplib.SMTPServerDisconnected("Connection unexpectedly closed: timed out")
    disconnect.__context__ = TimeoutError("timed out")

    failure = _raised(disconnect, smtp.SmtpFailure)

    assert isinstance(failure, smtp.SmtpFailure) and failure.kind == "connection"
    assert _cause(failure.kind, failure) == "timeout"


def test_imap_login_refusals_keep_the_servers_words() -> None:
    import imaplib

    failure = imap.classify(
        imaplib.IMAP4.error(b"[AUTHENTICATIONFAILED] Authentication failed."), during="login"
    )
    assert failure.kind == "auth" and failure.reply == "[AUTHENTICATIONFAILED] Authentication failed."
    assert _cause(failure.kind, failure) == "auth"


def test_the_words_name_the_fix() -> None:
    assert "App passwords" in _words("auth", "SMTP", "smtp.gmail.com", 465, "ssl", "535")
    assert "port 587 uses STARTTLS" in _words("tls", "SMTP", "smtp.example.com", 587, "ssl", "x")
    assert "Port 465 expects SSL" in _words("timeout", "SMTP", "smtp.example.com", 465, "starttls", "x")
    assert "554 go away" in _words("refused", "SMTP", "smtp.example.com", 465, "ssl", "554 go away")
