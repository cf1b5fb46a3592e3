"""Every report of the corpus (tests/support/bounce_corpus) read as its expected.json says.

70 reports in the style of 29 mail systems and providers: for each, the kind, and for each
recipient the status, the reason, whether the email was given up, and what the address's
fate is. The table of reasons in docs/bounces.md is built from the same data and checked here.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from mailer_core.bounces import classify, reading

from tests.support.bounce_helpers import CORPUS, filled

EXPECTED: dict[str, Any] = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))
DOC = Path(__file__).resolve().parents[3] / "docs" / "bounces.md"
OUR_ID = "<01JDX0000000000000000000AB@example.com>"
RECIPIENT, OTHER = "client@client.example", "other@client.example"
ADDRESSES = {"{recipient}": RECIPIENT, "{other}": OTHER, None: None}


def entries(name: str) -> list[dict[str, Any]]:
    value = EXPECTED[name]
    return value if isinstance(value, list) else [value]


def read(name: str) -> tuple[bytes, reading.Report | None]:
    text = (CORPUS / name).read_bytes().decode("utf-8")
    raw = filled(text, message_id=OUR_ID, recipient=RECIPIENT, other=OTHER)
    return raw, reading.parse(raw)


def test_the_corpus_is_whole() -> None:
    files = {p.name for p in CORPUS.glob("*.eml")}
    assert files == set(EXPECTED)
    systems = {e["system"] for name in EXPECTED for e in entries(name)}
    assert len(systems) >= 15
    reasons = Counter(e["reason"] for name in EXPECTED for e in entries(name))
    assert set(reasons) == set(classify.REASONS)


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if entries(n)[0]["kind"] != "auto_reply"))
def test_a_report_is_read_as_expected(name: str) -> None:
    raw, report = read(name)
    headers = raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    assert reading.is_candidate(headers), "the headers alone must say it is a report"
    assert report is not None and report.kind == entries(name)[0]["kind"]
    got = sorted(
        (f.address, f.status, f.reason, f.permanent, classify.DECISIONS[f.reason]) for f in report.failures
    )
    want = sorted(
        (ADDRESSES[e["recipient"]], e["status"], e["reason"], e["permanent"], e["decision"])
        for e in entries(name)
    )
    assert got == want
    if "{message_id}" in (CORPUS / name).read_text(encoding="utf-8"):
        assert OUR_ID in report.message_ids


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if entries(n)[0]["kind"] == "auto_reply"))
def test_an_automatic_reply_is_neither_a_bounce_nor_a_reply(name: str) -> None:
    raw, report = read(name)
    headers = raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    assert reading.is_auto_reply(headers)
    assert report is None or (report.kind == "auto_reply" and report.failures == ())


def test_no_sender_side_or_first_full_mailbox_report_suppresses_and_every_unknown_user_does() -> None:
    for name in EXPECTED:
        _, report = read(name)
        for failure in report.failures if report else ():
            decision = classify.DECISIONS[failure.reason]
            if (failure.status or "").startswith(("5.7.", "5.2.")) or failure.reason in classify.SENDER_SIDE:
                assert decision != "suppress", (name, failure)
            if failure.reason == "user_unknown":
                assert decision == "suppress", (name, failure)


def reasons_table() -> str:
    counts = Counter(e["reason"] for name in EXPECTED for e in entries(name))
    rows = ["| reason | decision | corpus reports |", "| --- | --- | --- |"]
    rows += [f"| `{r}` | {classify.DECISIONS[r]} | {counts[r]} |" for r in classify.REASONS]
    return "\n".join(rows)


def test_the_docs_table_of_reasons_is_the_code_and_the_corpus() -> None:
    text = DOC.read_text(encoding="utf-8")
    block = re.search(r"<!-- reasons: start -->\n(.*?)\n<!-- reasons: end -->", text, re.S)
    assert block is not None, "docs/bounces.md lacks the reasons table"
    assert block.group(1).strip() == reasons_table(), "paste this table:\n" + reasons_table()
