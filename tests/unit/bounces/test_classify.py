"""Naming why a delivery failed: the words first, then the status; what each reason decides."""

from __future__ import annotations

import pytest
from mailer_core.bounces import classify


@pytest.mark.parametrize(
    ("status", "words", "reason"),
    [
        # the first digit says nothing about the address: the words do
        ("5.2.2", "552 5.2.2 Mailbox full", "mailbox_full"),
        (
            "5.7.26",
            "550 5.7.26 Unauthenticated email from example.com is not accepted due to DMARC",
            "sender_auth",
        ),
        (
            "5.7.1",
            "554 5.7.1 Service unavailable; Client host [192.0.2.7] blocked using zen.spamhaus.org",
            "blocked",
        ),
        ("5.7.1", "550 5.7.1 Message rejected as spam by Content Filtering", "blocked"),
        (
            "5.7.25",
            "550 5.7.25 The IP address sending this message does not have a PTR record",
            "sender_auth",
        ),
        ("4.4.7", "Delivery time expired", "expired"),
        # the words override a misleading status
        ("5.1.1", "550 5.1.1 Recipient address rejected: your domain fails DMARC policy", "sender_auth"),
        ("5.0.0", "550 Requested action not taken: mailbox unavailable", "user_unknown"),
        ("5.0.0", "550 unknown user", "user_unknown"),
        (
            "5.0.0",
            "Host or domain name not found. Name service error for name=nowhere.example",
            "host_unknown",
        ),
        ("5.1.6", "550 5.1.6 Recipient has moved", "moved"),
        ("5.2.1", "550 5.2.1 The email account that you tried to reach is disabled", "disabled"),
        ("5.1.10", "556 5.1.10 Domain client.example does not accept mail (nullMX)", "no_mail"),
        (
            "4.2.1",
            "450 4.2.1 The user you are trying to contact is receiving mail at a rate that prevents",
            "rate_limited",
        ),
        ("5.3.4", "552 5.3.4 Message size exceeds fixed limit", "too_large"),
        # Russian and German words
        ("5.0.0", "550 Такого пользователя нет: адрес не существует", "user_unknown"),
        (None, "Почтовый ящик переполнен", "mailbox_full"),
        ("5.0.0", "Empfänger unbekannt", "user_unknown"),
        # no words worth reading: the status decides
        ("5.1.1", "", "user_unknown"),
        ("5.1.2", "", "host_unknown"),
        ("5.1.10", "", "no_mail"),
        ("5.4.4", "", "host_unknown"),
        ("5.7.1", "", "blocked"),
        ("5.0.0", "554 Transaction failed", "other"),
        ("4.0.0", "451 please wait", "on_hold"),
    ],
)
def test_a_reason_is_named_from_the_words_then_the_status(
    status: str | None, words: str, reason: str
) -> None:
    assert classify.reason_of(status, words) == reason


def test_a_delay_notice_that_says_try_again_later_is_on_hold_but_a_final_one_is_not() -> None:
    assert classify.reason_of("4.7.1", "450 4.7.1 greylisted, try again later", "delayed") == "on_hold"
    assert classify.reason_of("5.0.0", "550 try again later never", "failed") == "other"


def test_a_receipt_is_delivered_whatever_the_words() -> None:
    assert classify.reason_of("2.0.0", "250 2.0.0 OK user unknown", "delivered") == "delivered"
    assert classify.reason_of("2.0.0", "", "relayed") == "delivered"


@pytest.mark.parametrize(
    ("words", "status"),
    [
        ("smtp; 550 5.1.1 <a@b.example>: No such user", "5.1.1"),
        ("550-5.7.26 Unauthenticated email", "5.7.26"),
        ("550 Requested action not taken", "5.0.0"),
        ("452 Too many recipients", "4.0.0"),
        ("host 192.0.2.12 said: bye", None),  # an IP address is no status code
        ("version 10.2.3 of the server", None),
        ("", None),
    ],
)
def test_a_status_is_read_from_the_words_when_the_report_gives_none(words: str, status: str | None) -> None:
    assert classify.status_in(words) == status


@pytest.mark.parametrize(
    ("reason", "status", "action", "permanent"),
    [
        ("user_unknown", "5.1.1", "failed", True),
        ("mailbox_full", "4.2.2", "delayed", False),
        ("mailbox_full", "4.2.2", "failed", True),  # the sender's server gave up
        ("expired", "4.4.7", None, True),
        ("on_hold", "4.0.0", None, False),
        ("other", None, None, True),  # a report without a status that is not a delay notice
        ("rate_limited", "4.2.1", None, False),
    ],
)
def test_permanent_means_the_email_was_given_up(
    reason: classify.Reason, status: str | None, action: str | None, permanent: bool
) -> None:
    assert classify.is_permanent(reason, status, action) is permanent


def test_only_reasons_that_say_the_address_is_gone_suppress_at_once() -> None:
    at_once = {r for r, d in classify.DECISIONS.items() if d == "suppress"}
    assert at_once == {"user_unknown", "host_unknown", "moved", "no_mail", "complained"}
    assert {r for r, d in classify.DECISIONS.items() if d == "on_repeat"} == {"mailbox_full", "disabled"}
    assert set(classify.DECISIONS) == set(classify.REASONS)
    assert all(classify.DECISIONS[r] == "keep" for r in classify.SENDER_SIDE)
