"""The scheduler loop: fires due one-time schedules at Lambda and SQS targets."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from mailer_core.base.clock import FakeClock

from devstack.scheduler_loop import SchedulerLoop, parse_at
from devstack.template import schedule_groups
from tests.support.stack_helpers import MiniStack, client, mini_stack

TEMPLATE = """
Resources:
  Group:
    Type: AWS::Scheduler::ScheduleGroup
    Properties:
      Name: !Sub "${AWS::StackName}-timers"
  Inbox:
    Type: AWS::SQS::Queue
  TimersFunction:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: !Sub "${AWS::StackName}-timers"
      CodeUri: ../functions/timers
      Handler: handler.lambda_handler
"""

TIMERS = """
EVENTS = []

def lambda_handler(event, context):
    EVENTS.append(event)
    if event.get("fail"):
        raise RuntimeError("the target failed")
    return {"released": event.get("message_id")}
"""

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
ROLE = "arn:aws:iam::123456789012:role/scheduler"


class Harness:
    def __init__(self, stack: MiniStack, endpoint: str) -> None:
        self.stack = stack
        self.clock = FakeClock(current=NOW)
        self.scheduler = client(endpoint, "scheduler")
        self.sqs = client(endpoint, "sqs")
        (self.group,) = schedule_groups(stack.template, stack.resources)
        self.loop = SchedulerLoop(self.scheduler, self.sqs, stack.functions, [self.group], clock=self.clock)
        self.function_arn = stack.functions.get("TimersFunction").arn

    def create(self, name: str, expression: str, target: dict[str, Any], **kwargs: Any) -> None:
        self.scheduler.create_schedule(
            Name=name,
            GroupName=self.group,
            ScheduleExpression=expression,
            FlexibleTimeWindow={"Mode": "OFF"},
            Target={"RoleArn": ROLE, **target},
            **kwargs,
        )

    def names(self) -> list[str]:
        schedules = self.scheduler.list_schedules(GroupName=self.group)["Schedules"]
        return sorted(s["Name"] for s in schedules)

    @property
    def events(self) -> list[Any]:
        return self.stack.module("TimersFunction").EVENTS  # type: ignore[no-any-return]


@pytest.fixture
def harness(tmp_path: Path, local_aws: str) -> Harness:
    return Harness(mini_stack(tmp_path, TEMPLATE, {"timers": TIMERS}), local_aws)


@pytest.mark.parametrize(
    ("expression", "timezone", "expected"),
    [
        ("at(2026-11-24T12:00:00)", "Europe/Moscow", datetime(2026, 11, 24, 9, 0, tzinfo=UTC)),
        ("at(2026-07-01T12:00:00)", "Europe/Berlin", datetime(2026, 7, 1, 10, 0, tzinfo=UTC)),
        ("at(2026-11-24T12:00:00)", None, datetime(2026, 11, 24, 12, 0, tzinfo=UTC)),
        ("rate(5 minutes)", None, None),
        ("cron(0 12 * * ? *)", "UTC", None),
    ],
)
def test_parse_at_reads_one_time_expressions_in_their_timezone(
    expression: str, timezone: str | None, expected: datetime | None
) -> None:
    assert parse_at(expression, timezone) == expected


def test_a_due_schedule_invokes_its_lambda_target_and_a_future_one_waits(harness: Harness) -> None:
    # GIVEN one schedule due now (noon in Moscow is 09:00 UTC) and one due a second later
    harness.create(
        "due",
        "at(2026-11-24T12:00:00)",
        {"Arn": harness.function_arn, "Input": json.dumps({"message_id": "m1"})},
        ScheduleExpressionTimezone="Europe/Moscow",
        ActionAfterCompletion="DELETE",
    )
    harness.create(
        "later",
        "at(2026-11-24T09:00:01)",
        {"Arn": harness.function_arn, "Input": json.dumps({"message_id": "m2"})},
    )
    # WHEN the loop ticks
    fired = harness.loop.tick()
    # THEN only the due one fired, with its Input as the event, and it was deleted (DELETE)
    assert fired == [f"{harness.group}/due"]
    assert harness.events == [{"message_id": "m1"}]
    assert harness.names() == ["later"]

    # WHEN time reaches the second one, THEN it fires once and, without DELETE, stays
    harness.clock.advance(1)
    assert harness.loop.tick() == [f"{harness.group}/later"]
    assert harness.loop.tick() == []
    assert harness.events == [{"message_id": "m1"}, {"message_id": "m2"}]
    assert harness.names() == ["later"]


def test_a_schedule_without_input_sends_an_empty_event(harness: Harness) -> None:
    harness.create("bare", "at(2026-11-24T08:00:00)", {"Arn": harness.function_arn})
    harness.loop.tick()
    assert harness.events == [{}]


def test_an_sqs_target_gets_the_input_as_a_message(harness: Harness) -> None:
    queue_arn = harness.stack.resources.attrs[("Inbox", "Arn")]
    harness.create("to-queue", "at(2026-11-24T09:00:00)", {"Arn": queue_arn, "Input": "release m7"})
    assert harness.loop.tick() == [f"{harness.group}/to-queue"]
    messages = harness.sqs.receive_message(QueueUrl=harness.stack.resources.refs["Inbox"])["Messages"]
    assert [m["Body"] for m in messages] == ["release m7"]


def test_a_failing_target_is_retried_on_later_ticks_then_dropped(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.create(
        "broken",
        "at(2026-11-24T09:00:00)",
        {"Arn": harness.function_arn, "Input": json.dumps({"fail": True})},
        ActionAfterCompletion="DELETE",
    )
    with caplog.at_level(logging.ERROR, logger="devstack.scheduler_loop"):
        for _ in range(5):
            harness.loop.tick()
    assert len(harness.events) == harness.loop.max_attempts == 3
    assert any("dropped" in r.getMessage() for r in caplog.records)
    assert harness.names() == []  # DELETE applies after the last failed try too


def test_recurring_schedules_are_not_fired(harness: Harness) -> None:
    harness.create("every-5", "rate(5 minutes)", {"Arn": harness.function_arn})
    harness.clock.advance(3600)
    assert harness.loop.tick() == []
    assert harness.events == []


def test_every_page_of_schedules_is_read(harness: Harness) -> None:
    # GIVEN more schedules than one ListSchedules page holds (moto's page is 50)
    for i in range(55):
        harness.create(
            f"s{i:02d}", "at(2026-11-24T09:00:00)", {"Arn": harness.function_arn, "Input": f'{{"n": {i}}}'}
        )
    assert harness.scheduler.list_schedules(GroupName=harness.group).get("NextToken")
    # WHEN the loop ticks, THEN it fired all of them
    harness.loop.tick()
    assert sorted(e["n"] for e in harness.events) == list(range(55))
