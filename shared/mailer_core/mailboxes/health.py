"""What receiving servers say about a mailbox's mail: its deliverability, in plain words.

The traffic light (mailboxes.check) says whether Mailer can log in and send; it stays green
when a recipient's server refuses the mail for the sender's sake: its domain fails DMARC, the
sending server's IP is on a block list, the content looks like spam. Such a report says
nothing against the recipient (no suppression) and everything to the mailbox's owner, so the
bounce path notes it here (`note_refusal`) and the mailbox's view shows the latest one, with
the cause in the manager's words, for `SHOWN_FOR` after it came. The view also says when
reading the inbox for bounces keeps failing (`polling_view`).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from pynamodb.exceptions import UpdateError

from mailer_core.store.conditions import is_condition_failure
from mailer_core.store.models import MailboxModel

SHOWN_FOR = timedelta(days=14)
QUARANTINE_AFTER = 8  # failed bounce polls in a row before the mailbox is polled once a day

# The sender's own failures, most specific first: (pattern of the server's words, the cause).
_CAUSES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.I), cause)
    for pattern, cause in (
        (r"\bdmarc\b|5\.7\.26\b", "your domain fails DMARC (its DMARC policy, SPF and DKIM disagree)"),
        (r"\bspf\b|5\.7\.23\b", "your domain's SPF record does not allow the server that sent it"),
        (r"\bdkim\b|5\.7\.(27|9)\b", "your mail's DKIM signature is missing or does not verify"),
        (
            r"reverse dns|\bptr\b|rdns|5\.7\.25\b",
            "the sending server's IP address has no matching reverse DNS (PTR) record",
        ),
        (
            r"unauthenticated|not authenticated|authentication",
            "your mail is not authenticated (SPF, DKIM, DMARC)",
        ),
        (
            r"spamhaus|block ?list|blacklist|\brbl\b|dnsbl|banned sending ip|ip .*(listed|blocked)|5\.7\.606",
            "the sending server's IP address is on a block list",
        ),
        (r"spam|phish|virus|malware|content", "it took your email for spam"),
    )
)


def cause_of(reason: str, domain: str, words: str) -> str:
    """The refusal in the manager's words: "gmail.com refuses your mail: your domain fails DMARC"."""
    for pattern, cause in _CAUSES:
        if pattern.search(words):
            if cause.startswith("it took"):
                return f"{domain} {cause[3:]}"
            return f"{domain} refuses your mail: {cause}"
    if reason == "sender_auth":
        return f"{domain} refuses your mail: your mail is not authenticated (SPF, DKIM, DMARC)"
    return f"{domain} refuses your mail by its policy"


def note_refusal(
    mailbox: MailboxModel, *, reason: str, recipient: str, words: str, status: str | None, at: datetime
) -> None:
    """Keep the latest refusal on the mailbox (an older report never replaces a newer one)."""
    domain = recipient.rsplit("@", 1)[-1].lower()
    problem = {
        "reason": reason,
        "domain": domain,
        "cause": cause_of(reason, domain, words),
        "status": status,
        "words": words[:1000],
        "at": at.isoformat(),
    }
    try:
        mailbox.update(
            actions=[MailboxModel.delivery_problem.set(problem), MailboxModel.delivery_problem_at.set(at)],
            condition=MailboxModel.mailbox_id.exists()
            & (MailboxModel.delivery_problem_at.does_not_exist() | (MailboxModel.delivery_problem_at <= at)),
        )
    except UpdateError as error:
        if not is_condition_failure(error):
            raise


def problem_view(mailbox: MailboxModel, now: datetime) -> dict[str, Any] | None:
    """The latest refusal while it is recent, for the mailbox's view; None when there is none."""
    if mailbox.delivery_problem is None or mailbox.delivery_problem_at is None:
        return None
    if now - mailbox.delivery_problem_at > SHOWN_FOR:
        return None
    return dict(mailbox.delivery_problem.as_dict())


def polling_view(mailbox: MailboxModel) -> dict[str, Any] | None:
    """The bounce polling's trouble (mailer_core.bounces.poller) for the mailbox's view; None if none."""
    if not mailbox.imap_poll_failures:
        return None
    failures = int(mailbox.imap_poll_failures)
    return {
        "failures": failures,
        "error": mailbox.imap_poll_error,
        "next_poll_at": mailbox.imap_next_poll_at.isoformat() if mailbox.imap_next_poll_at else None,
        "quarantined": failures >= QUARANTINE_AFTER,
    }
