"""Why a delivery failed, in a named reason, and what that means for the address.

A report's status code alone misleads: 5.x.x says the attempt failed for good, not that the
address is gone. A full mailbox (5.2.2), the sender's failed DMARC (5.7.26) or a spam filter
(5.7.1) are permanent answers about this one email, and the address is fine. So each failure
is read for its reason, from the remote server's words first (they are the most specific),
then from the status code, and only the reasons that say the address itself is gone suppress
it at once (`DECISIONS`). The table in docs/bounces.md is this module's, checked by a test
over the corpus in tests/support/bounce_corpus.
"""

from __future__ import annotations

import re
from typing import Literal, get_args

Reason = Literal[
    "user_unknown",
    "host_unknown",
    "moved",
    "no_mail",
    "mailbox_full",
    "disabled",
    "too_large",
    "blocked",
    "sender_auth",
    "rate_limited",
    "expired",
    "on_hold",
    "auto_reply",
    "delivered",
    "complained",
    "other",
]
Decision = Literal["suppress", "on_repeat", "keep"]
REASONS: tuple[Reason, ...] = get_args(Reason)

DECISIONS: dict[Reason, Decision] = {
    "user_unknown": "suppress",
    "host_unknown": "suppress",
    "moved": "suppress",
    "no_mail": "suppress",
    "mailbox_full": "on_repeat",
    "disabled": "on_repeat",  # a provider may switch an account back on: 5.2.x is the mailbox's state
    "complained": "suppress",
    "too_large": "keep",
    "blocked": "keep",
    "sender_auth": "keep",
    "rate_limited": "keep",
    "expired": "keep",
    "on_hold": "keep",
    "auto_reply": "keep",
    "delivered": "keep",
    "other": "keep",
}

# Reasons that point at the sender (its domain, IP or content): the mailbox is told, never the recipient.
SENDER_SIDE: frozenset[Reason] = frozenset({"blocked", "sender_auth"})

# The remote server's words, most specific first: the first pattern that matches names the reason.
_WORD_PATTERNS: tuple[tuple[Reason, str], ...] = (
    (
        "sender_auth",
        r"\bdmarc\b|\bspf\b|\bdkim\b|reverse dns|\bptr\b|rdns|unauthenticated (email|mail|sender)"
        r"|not authenticated|sender authentication|authentication (check|failure|failed)"
        r"|5\.7\.(2[3-7]|7|9)\b",
    ),
    (
        "rate_limited",
        r"rate limit|too many (messages|emails|connections|recipients)|receiving mail at a rate"
        r"|throttl|\bTS[S]?0\d\b|exceeded the (maximum )?(sending|message) rate|try again in \d+"
        r"|temporarily deferred due to|sending limit|limit for sending|4\.7\.28\b",
    ),
    ("on_hold", r"greylist|graylist"),  # only for a delay: the loop skips it for a final answer
    (
        "mailbox_full",
        r"mailbox (is )?full|over ?quota|quota (exceeded|exceed)"
        r"|exceeded (the |his |her |their )?(storage|quota)"
        r"|insufficient (system )?storage|out of storage|storage (space|limit|full)|mailbox size limit"
        r"|ящик переполнен|переполнен|превышен[аоы]? (квота|размер)|postfach (ist )?voll|speicherplatz"
        r"|[45]\.2\.2\b",
    ),
    (
        "expired",
        r"retry time(out)? (not reached for any host|exceeded)|message expired|delivery time expired"
        r"|could not be delivered (for|within) \d+|cannot send message for \d+|too long in (the )?queue"
        r"|in the queue too long|expired after|maximum time|[45]\.4\.7\b",
    ),
    (
        "too_large",
        r"message (size |is too |too )?(exceeds|large|big)|size limit|too large|message length exceeds"
        r"|[45]\.3\.4\b|[45]\.2\.3\b",
    ),
    ("moved", r"has moved|no longer (at|with|works|employed)|[45]\.1\.6\b"),
    ("no_mail", r"does not accept (e-?mail|mail)|accepts no mail|null ?mx"),
    (
        "disabled",
        r"(account|mailbox|address|user) (is |has been |was )?"
        r"(disabled|deactivated|suspended|inactive|frozen)"
        r"|disabled (account|mailbox|user)|blocked by owner",
    ),
    (
        "host_unknown",
        r"host (or domain name )?not found|domain (name )?not found|no such domain"
        r"|unrouteable (mail )?(domain|address)"
        r"|domain does not exist|nxdomain|no mx|mx (record|lookup)|name service error|unknown domain"
        r"|host unknown|домен не (существует|найден)|[45]\.1\.2\b|[45]\.4\.4\b",
    ),
    (
        "user_unknown",
        r"user unknown|unknown user|no such (user|mailbox|recipient|account|address)|does ?n[o']t exist"
        r"|not exist|recipient (address )?(not found|unknown|invalid|rejected: user)"
        r"|unknown recipient|invalid (recipient|mailbox|address)|address (is )?(possibly )?incorrect"
        r"|mailbox (unavailable|not found|does not)|address rejected|not listed in"
        r"|not a valid (mailbox|recipient|user)|no mailbox|user not found|not our customer"
        r"|account (that you tried to reach )?(does not|doesn't) exist|recipient not found"
        r"|addressee unknown|no longer on (this|the) server|recipient ?not ?found|recipient \S+ not found"
        r"|нет такого|не существует|не найден|unbekannt|existiert nicht|[45]\.1\.1\b",
    ),
    (
        "blocked",
        r"spam|blocked|block ?list|blacklist|spamhaus|barracuda|rbl\b|\bdnsbl|banned|policy"
        r"|rejected (for|due to|by)|not (authorized|authorised|permitted|allowed)|denied"
        r"|reputation|content (rejected|filter)|virus|malware|phish",
    ),
    (
        "on_hold",
        r"try again later|will (be )?retr(y|ied)|still trying|delayed|deferred|temporar(y|ily)"
        r"|keep trying",
    ),
)
_WORDS = tuple((reason, re.compile(pattern, re.I)) for reason, pattern in _WORD_PATTERNS)

# Enhanced status codes (RFC 3463) by subject and detail, when the words name nothing.
_STATUS_PATTERNS: tuple[tuple[str, Reason], ...] = (
    (r"\d\.1\.[0134]", "user_unknown"),
    (r"\d\.1\.2", "host_unknown"),
    (r"\d\.1\.6", "moved"),
    (r"\d\.1\.10", "no_mail"),
    (r"5\.2\.1", "disabled"),
    (r"4\.2\.1", "rate_limited"),
    (r"\d\.2\.2", "mailbox_full"),
    (r"\d\.[23]\.[34]", "too_large"),
    (r"\d\.4\.4", "host_unknown"),
    (r"\d\.4\.5", "rate_limited"),
    (r"\d\.4\.7", "expired"),
    (r"\d\.7\.(2[3-7]|7|9)", "sender_auth"),
    (r"4\.7\.28", "rate_limited"),
    (r"\d\.7\.\d+", "blocked"),
)
_STATUS = tuple((re.compile(pattern), reason) for pattern, reason in _STATUS_PATTERNS)

_ENHANCED = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.]*\d)")
_BASIC = re.compile(r"(?<![\d.])([45])\d\d(?:[ -]|$)")
_DELIVERED_ACTIONS = ("delivered", "relayed", "expanded")


def status_in(words: str) -> str | None:
    """The enhanced status code the words carry; else the class of a basic SMTP reply code."""
    enhanced = _ENHANCED.search(words)
    if enhanced:
        return enhanced.group(1)
    basic = _BASIC.search(words)
    return f"{basic.group(1)}.0.0" if basic else None


def reason_of(status: str | None, words: str, action: str | None = None) -> Reason:
    """The reason one recipient's delivery failed (or was delayed, or went through)."""
    action = (action or "").lower()
    if action in _DELIVERED_ACTIONS:
        return "delivered"
    reason = _named(status, words, action)
    if action == "delayed" and reason == "expired":
        return "on_hold"  # still trying: nothing expired yet
    if (
        action == "failed"
        and (status or "").startswith("4")
        and reason in ("on_hold", "other", "host_unknown")
    ):
        return "expired"  # the sender's server gave up on a temporary failure
    return reason


def _named(status: str | None, words: str, action: str) -> Reason:
    for reason, pattern in _WORDS:
        if reason == "on_hold" and not _transient(status, action):
            continue
        if pattern.search(words):
            return reason
    for pattern, reason in _STATUS:
        if status and pattern.fullmatch(status):
            return reason
    return "on_hold" if _transient(status, action) else "other"


def is_permanent(reason: Reason, status: str | None, action: str | None = None) -> bool:
    """Whether delivery to the address is given up for this email."""
    action = (action or "").lower()
    if action in ("delayed", "failed"):
        return action == "failed"  # the sender's server says whether it gave up
    if reason == "expired":
        return True
    if reason in ("on_hold", "delivered", "auto_reply", "complained"):
        return False
    return not (status or "5").startswith("4")


def _transient(status: str | None, action: str) -> bool:
    return action == "delayed" or (status or "").startswith("4")
