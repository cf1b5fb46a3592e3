"""docs/operations.md is the runbook of what the template watches: every alarm names a section
of it that exists, every saved query and every dead-letter queue is in it."""

from __future__ import annotations

import re

from tests.infrastructure.sam_offline import ROOT, load_source, props, resources, single_ref, sub_text

RUNBOOK = ROOT / "docs" / "operations.md"
LINK = re.compile(r"Runbook: docs/operations\.md#([\w-]+)")


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _text() -> str:
    return RUNBOOK.read_text(encoding="utf-8")


def _anchors() -> set[str]:
    return {_slug(m) for m in re.findall(r"^#{2,4} (.+)$", _text(), re.M)}


def _section(anchor: str) -> str:
    """The text under the heading with this anchor, up to the next heading of its level or above."""
    lines = _text().splitlines()
    for i, line in enumerate(lines):
        found = re.match(r"^(#{2,4}) (.+)$", line)
        if found and _slug(found.group(2)) == anchor:
            level = len(found.group(1))
            end = next(
                (j for j in range(i + 1, len(lines)) if re.match(rf"^#{{1,{level}}} ", lines[j])), len(lines)
            )
            return "\n".join(lines[i:end])
    raise AssertionError(f"no section #{anchor}")


ALARMS = resources(load_source(), "AWS::CloudWatch::Alarm")


def test_each_alarm_names_a_section_of_the_runbook_that_exists() -> None:
    assert ALARMS
    links = {alarm: LINK.search(str(props(res).get("AlarmDescription"))) for alarm, res in ALARMS.items()}

    assert [alarm for alarm, link in links.items() if link is None] == []
    assert {
        alarm: link.group(1) for alarm, link in links.items() if link and link.group(1) not in _anchors()
    } == {}


def test_the_runbook_lists_every_alarm_kind() -> None:
    named = {m.group(1) for a in ALARMS.values() if (m := LINK.search(str(props(a)["AlarmDescription"])))}

    assert named == {
        "dead-letter-queue-not-empty",
        "oldest-queued-email-too-old",
        "send-failure-rate",
        "lambda-errors",
        "lambda-throttles",
        "kommo-blocks",
    }


def test_the_runbook_says_what_to_do_with_each_dead_letter_queue() -> None:
    section = _section("dead-letter-queue-not-empty")
    queues = {
        single_ref(props(res)["RedrivePolicy"]["deadLetterTargetArn"])
        for res in resources(load_source(), "AWS::SQS::Queue").values()
        if "RedrivePolicy" in props(res)
    }
    assert queues
    for queue in sorted(queues):
        assert f"| `{queue}` |" in section, queue


def test_the_runbook_names_every_saved_query() -> None:
    names = [
        sub_text(props(q)["Name"]).rsplit("/", 1)[-1]
        for q in resources(load_source(), "AWS::Logs::QueryDefinition").values()
    ]
    assert names
    for name in names:
        assert f'"{name}"' in _text(), name
