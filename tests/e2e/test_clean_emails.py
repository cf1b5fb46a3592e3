"""Every email of the worked example, and a plain compose, is clean for SpamAssassin.

The local stack plays the worked example (as `make demo` does) and a manager composes a
short email of their own with a tracked link and the open pixel; the SMTP sink keeps the
exact bytes that went out. SpamAssassin (Debian's package, local rules only: see
tests/support/spamassassin.py) scores each email, at most two at a time.

Each must score at most 1.0 and fire no STRUCTURAL rule. Structural rules judge how the
message is built, not what it says, so they are ours to get right whatever a manager
writes: the HTML's shape (HTML_IMAGE_ONLY_*, HTML_IMAGE_RATIO_*, HTML_SHORT_LINK_IMG_*, an
HTML part without its tag, unbalanced or obfuscated markup, HTML_FONT_*), the MIME
structure (HTML only or mostly, text and HTML alternatives that differ: MPART_ALT_DIFF*,
quoted-printable lines too long, base64 badly cut, bad boundaries or content types) and the
headers (MISSING_* such as MISSING_MID, MISSING_DATE or MISSING_HEADERS, invalid dates or
Message-IDs, dates in the future or the past, encodings of headers that need none, TVD_*
layout tricks). Informational rules (HTML_MESSAGE, NO_RECEIVED, NO_RELAYS) and WEIRD_PORT
(the local stack's tracking URLs carry a port; a deployed stack's do not) are not
structural, and count only through their points, all 0.0.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from devstack.smtp_sink import SinkMessage
from devstack.system import LocalSystem, call
from devstack.worked_example import EXPECTED_STEPS, play_example
from tests.support.spamassassin import SpamReport, require_spamassassin, score_all

pytestmark = pytest.mark.e2e

MAX_SCORE = 1.0
# Rule names, or the beginnings of families of them (those ending in "_").
STRUCTURAL_RULES = (
    *("HTML_IMAGE_ONLY_", "HTML_IMAGE_RATIO_", "HTML_SHORT_LINK_IMG_", "HTML_MIME_NO_HTML_TAG"),
    *("HTML_TAG_BALANCE_", "HTML_EXTRA_CLOSE", "HTML_OBFUSCATE_", "HTML_FONT_", "HTML_MISSING_CTYPE"),
    *("MIME_HTML_ONLY", "MIME_HTML_MOSTLY", "MPART_ALT_DIFF", "MIME_QP_LONG_LINE", "MIME_BASE64_"),
    *("BASE64_LENGTH_", "MIME_BOUND_", "MIME_HEADER_CTYPE_ONLY", "MIME_CHARSET_FARAWAY", "CTYPE_"),
    *("EMPTY_MESSAGE", "MISSING_", "INVALID_DATE", "INVALID_MSGID", "MSGID_", "DATE_IN_FUTURE_"),
    *("DATE_IN_PAST_", "FROM_EXCESS_BASE64", "HEADER_COUNT_", "TVD_"),
)
_RULES_FOLDER = Path("/usr/share/spamassassin")
_DEFINED = re.compile(
    r"^\s*(?:body|rawbody|header|full|uri|meta|mimeheader)\s+([A-Z][A-Z0-9_]+)", re.MULTILINE
)


def _names(rule: str, name: str) -> bool:
    return name == rule or (rule.endswith("_") and name.startswith(rule))


def structural(name: str) -> bool:
    return any(_names(rule, name) for rule in STRUCTURAL_RULES)


PLAIN_COMPOSE = {
    "to": ["client@example.com"],
    "subject": "Каталог, как договорились",
    "html": (
        "<p>Добрый день, Иван!</p><p>Как договорились, высылаю "
        '<a href="https://example.com/catalog">наш каталог</a>. Буду рада ответить на вопросы.</p>'
    ),
    "track_opens": True,
}


@pytest.fixture(scope="module")
def sent() -> list[SinkMessage]:
    """GIVEN the worked example played and a plain email composed: every email that went out."""
    with LocalSystem() as system:
        steps = play_example(system, say=lambda line: None)
        assert [s.ok for s in steps] == [True] * EXPECTED_STEPS, steps
        status, body = call(
            "POST", f"{system.stack.api_url}/v1/messages", system.widget_token(), PLAIN_COMPOSE
        )
        assert status == 202, body
        system.sink.wait_for(lambda m: m.subject == PLAIN_COMPOSE["subject"], timeout=30)
        return system.sink.messages


@pytest.fixture(scope="module")
def reports(sent: list[SinkMessage]) -> list[SpamReport]:
    require_spamassassin()
    return score_all((f"#{m.id} {m.subject!r} to {', '.join(m.rcpt_tos)}", m.raw) for m in sent)


def test_the_worked_example_and_a_plain_compose_are_all_scored(reports: list[SpamReport]) -> None:
    labels = [r.label for r in reports]
    assert len(labels) == 4, labels
    assert sum("ivan.petrov@example.com" in label for label in labels) == 1, labels  # the offer, opened
    assert sum("john.smith@example.com" in label for label in labels) == 2, labels  # offer, follow-up
    assert sum("client@example.com" in label for label in labels) == 1, labels  # the plain compose


def test_every_email_scores_at_most_one_point(reports: list[SpamReport]) -> None:
    high = [r.describe() for r in reports if r.score > MAX_SCORE]
    assert not high, "\n".join(high)


def test_no_structural_rule_fires_on_any_email(reports: list[SpamReport]) -> None:
    fired = [r.describe() for r in reports if any(structural(name) for name in r.names)]
    assert not fired, "\n".join(fired)


def test_the_text_parts_read_as_plain_text(sent: list[SinkMessage]) -> None:
    for email in sent:
        text = email.text or ""
        lines = text.splitlines()
        assert "-- " in lines, text  # the signature under the standard separator, not "\\--"
        assert not [line for line in lines if line.startswith(("#", "\\"))], text  # no Markdown
        assert "\n\n\n" not in text.replace("\r\n", "\n"), text  # one blank line at most
        assert ".." not in text, text  # "24 декабря 2025 г." ends its sentence once


def test_every_structural_rule_named_is_one_spamassassin_has() -> None:
    # a misspelt or retired name would let its rule fire unnoticed
    require_spamassassin()
    if not _RULES_FOLDER.is_dir():
        pytest.skip(f"SpamAssassin's rules are not in {_RULES_FOLDER} (not Debian's package)")
    defined = {
        name
        for path in _RULES_FOLDER.glob("*.cf")
        for name in _DEFINED.findall(path.read_bytes().decode("latin-1"))
    }
    unknown = [rule for rule in STRUCTURAL_RULES if not any(_names(rule, name) for name in defined)]
    assert not unknown, unknown
