"""The scheduler loop runs the template's recurring ScheduleV2 rate() events, as EventBridge would."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mailer_core.base.clock import FakeClock

from devstack.resources import load_template
from devstack.scheduler_loop import SchedulerLoop
from devstack.template import parse_rate, recurring_schedules
from tests.support.stack_helpers import client, mini_stack

TEMPLATE = """
Resources:
  PollFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ../functions/poll
      Handler: handler.lambda_handler
      Events:
        Every5:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: rate(5 minutes)
            Input: '{"kind": "poll"}'
        Nightly:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: cron(0 3 * * ? *)
"""

POLL = """
EVENTS = []

def lambda_handler(event, context):
    EVENTS.append(event)
    if len(EVENTS) == 2:
        raise RuntimeError("one run fails")
"""


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [("rate(5 minutes)", 300), ("rate(1 minute)", 60), ("rate(2 hours)", 7200), ("rate(1 day)", 86400)],
)
def test_rate_expressions_are_read(expression: str, seconds: int) -> None:
    assert parse_rate(expression) == seconds


@pytest.mark.parametrize("expression", ["cron(0 3 * * ? *)", "at(2026-11-24T09:00:00)", "rate(0 minutes)"])
def test_other_expressions_are_not_rates(expression: str) -> None:
    assert parse_rate(expression) is None


def test_the_templates_bounce_polling_runs_every_five_minutes() -> None:
    [schedule] = recurring_schedules(load_template())
    assert (schedule.function_id, schedule.period_seconds) == ("BounceFunction", 300)


def test_a_recurring_event_runs_every_period_from_one_period_after_the_start(
    tmp_path: Path, local_aws: str, caplog: pytest.LogCaptureFixture
) -> None:
    stack = mini_stack(tmp_path, TEMPLATE, {"poll": POLL})
    clock = FakeClock(current=datetime(2026, 11, 24, 9, 0, tzinfo=UTC))
    with caplog.at_level(logging.WARNING):
        recurring = recurring_schedules(stack.template)  # the cron() event is not run locally
    assert "cron(0 3 * * ? *)" in caplog.text
    loop = SchedulerLoop(
        client(local_aws, "scheduler"),
        client(local_aws, "sqs"),
        stack.functions,
        [],
        clock=clock,
        recurring=recurring,
    )
    events = stack.module("PollFunction").EVENTS

    assert loop.tick() == []  # the start: nothing yet
    clock.advance(299)
    assert loop.tick() == []
    clock.advance(1)
    assert loop.tick() == ["PollFunction.Every5"]
    assert loop.tick() == []  # once per period
    clock.advance(300)
    assert loop.tick() == ["PollFunction.Every5"]  # this run fails: logged, not retried
    clock.advance(3 * 300 + 10)  # missed runs are not made up
    assert loop.tick() == ["PollFunction.Every5"]
    assert events == [{"kind": "poll"}] * 3
