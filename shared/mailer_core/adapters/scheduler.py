"""EventBridge Scheduler: the only module that creates or deletes schedules.

One-time schedules (`at(...)`, 60-second precision, deleted after they fire) invoke the
timers function with a small JSON payload. Names are derived from what they are for, so a
second create of the same timer is a no-op and a cancel can find it without a lookup.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from mailer_core.adapters import aws
from mailer_core.base.config import get_settings

_NAME_OK = re.compile(r"^[0-9a-zA-Z\-_.]{1,64}$")


def schedule_name(kind: str, account_id: int, subject_id: str) -> str:
    name = f"{kind}-{account_id}-{subject_id}"
    if not _NAME_OK.match(name):
        raise ValueError(f"invalid schedule name {name!r}")
    return name


def at_expression(when: datetime) -> str:
    return f"at({when.astimezone(UTC):%Y-%m-%dT%H:%M:%S})"


def create_one_time(name: str, when: datetime, payload: dict[str, Any]) -> None:
    """Create a one-time schedule that invokes the timers function; existing is fine."""
    settings = get_settings()
    client = aws.client("scheduler")
    try:
        client.create_schedule(
            Name=name,
            GroupName=settings.schedule_group,
            ScheduleExpression=at_expression(when),
            ScheduleExpressionTimezone="UTC",
            FlexibleTimeWindow={"Mode": "OFF"},
            ActionAfterCompletion="DELETE",
            Target={
                "Arn": settings.timers_function_arn,
                "RoleArn": settings.scheduler_role_arn,
                "Input": json.dumps(payload, separators=(",", ":")),
                "RetryPolicy": {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185},
            },
        )
    except client.exceptions.ConflictException:
        return


def delete(name: str) -> bool:
    """Delete a schedule; False when it no longer exists (fired or never made)."""
    client = aws.client("scheduler")
    try:
        client.delete_schedule(Name=name, GroupName=get_settings().schedule_group)
    except client.exceptions.ResourceNotFoundException:
        return False
    return True
