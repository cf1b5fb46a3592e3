"""Reading delivery reports: who failed, the status, the words, the Message-ID of our email."""

from __future__ import annotations

from pathlib import Path

import pytest
from mailer_core.adapters import mime
from mailer_core.bounces import reading as bounces

DSN = Path(__file__).resolve().parents[2] / "integration" / "bounces" / "dsn"
OUR_ID = "<01JDX0000000000000000000AB@example.com>"


def dsn(name: str, recipient: str = "client@client.example") -> bytes:
    text = (DSN / f"{name}.eml").read_text(encoding="utf-8")
    text = text.replace("{message_id}", OUR_ID).replace("{recipient}", recipient)
    return text.replace("{sender}", "anna@example.com").replace("\n", "\r\n").encode()


@pytest.mark.parametrize("mta", ["postfix", "exim", "exchange", "gmail"])
@pytest.mark.parametrize(
    ("kind", "status", "permanent", "reason"),
    [("hard", "5.1.1", True, "user_unknown"), ("soft", "4.2.2", False, "mailbox_full")],
)
def test_reports_of_four_mtas_are_read(
    mta: str, kind: str, status: str, permanent: bool, reason: str
) -> None:
    raw = dsn(f"{mta}-{kind}-{status}")
    headers = raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"

    report = bounces.parse(raw)

    assert bounces.is_candidate(headers)
    assert report is not None
    assert OUR_ID in report.message_ids
    [failure] = report.failures
    assert (failure.address, failure.permanent, failure.status, failure.reason) == (
        "client@client.example",
        permanent,
        status,
        reason,
    )
    assert failure.diagnostic and status.replace(".", "") in failure.diagnostic.replace(".", "")
    assert report.reporting_mta and ";" not in report.reporting_mta
    assert report.report_id.startswith("<")


def test_a_failed_action_gives_the_email_up_whatever_the_status_says() -> None:
    """The sender's server stopped trying (RFC 3464 "failed"): the email will not arrive, and a
    full mailbox's reason (not the first digit) decides the address's fate."""
    raw = dsn("postfix-soft-4.2.2").replace(b"Action: delayed", b"Action: failed")
    report = bounces.parse(raw)
    assert report is not None
    [failure] = report.failures
    assert (failure.permanent, failure.reason, failure.status) == (True, "mailbox_full", "4.2.2")


def test_a_delay_notice_is_not_permanent() -> None:
    report = bounces.parse(dsn("postfix-soft-4.2.2"))
    assert report is not None
    [failure] = report.failures
    assert (failure.permanent, failure.action) == (False, "delayed")


def test_a_persons_reply_is_neither_a_candidate_nor_a_report() -> None:
    reply = (
        b"From: Client <client@client.example>\r\nTo: anna@example.com\r\nSubject: Re: Offer\r\n"
        b"In-Reply-To: " + OUR_ID.encode() + b"\r\n\r\nGot it. (My colleague got 550 5.1.1 User unknown.)\r\n"
    )
    assert not bounces.is_candidate(reply)
    assert bounces.parse(reply) is None


def test_the_envelope_token_names_the_message() -> None:
    sender = mime.envelope_sender("anna@example.com", "01JDX0000000000000000000AB")
    assert sender == "anna+mlr-01jdx0000000000000000000ab@example.com"
    raw = dsn("exim-hard-5.1.1").replace(b"To: anna@example.com", b"To: " + sender.encode())
    report = bounces.parse(raw)
    assert report is not None and report.tokens == ("01JDX0000000000000000000AB",)
