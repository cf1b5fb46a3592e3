"""A refusal for the sender's sake, in the manager's words."""

from __future__ import annotations

import pytest
from mailer_core.mailboxes import health


@pytest.mark.parametrize(
    ("reason", "words", "cause"),
    [
        ("sender_auth", "550 5.7.26 Unauthenticated email ... DMARC policy", "your domain fails DMARC"),
        (
            "sender_auth",
            "550 5.7.23 The message was rejected because of Sender Policy Framework (SPF)",
            "SPF record",
        ),
        (
            "sender_auth",
            "550 5.7.25 The IP address sending this message does not have a PTR record",
            "reverse DNS",
        ),
        ("sender_auth", "550 5.7.27 DKIM signature failed", "DKIM signature"),
        ("blocked", "554 5.7.1 Client host [198.51.100.7] blocked using zen.spamhaus.org", "on a block list"),
        ("blocked", "550 5.7.606 Access denied, banned sending IP [198.51.100.7]", "on a block list"),
    ],
)
def test_the_cause_names_what_the_sender_should_fix(reason: str, words: str, cause: str) -> None:
    said = health.cause_of(reason, "client.example", words)
    assert said.startswith("client.example refuses your mail: ") and cause in said


def test_spam_and_plain_policy_refusals_say_so() -> None:
    assert (
        health.cause_of("blocked", "mail.ru", "550 Message rejected as spam")
        == "mail.ru took your email for spam"
    )
    assert health.cause_of("blocked", "x.example", "550 5.7.1 Delivery not authorized") == (
        "x.example refuses your mail by its policy"
    )
