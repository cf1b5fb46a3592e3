"""Fire EventBridge Scheduler's schedules, which moto stores but never fires.

Each tick lists the schedules of the template's schedule groups, reads each one and fires
those whose `at(...)` time (in their `ScheduleExpressionTimezone`) has come: a Lambda target
is called in this process with the schedule's `Input` as its event, an SQS target gets the
`Input` as a message body. A fired schedule is deleted when its `ActionAfterCompletion` is
DELETE and otherwise remembered so it never fires twice. A target that fails is tried again
on later ticks, `max_attempts` times in all, then dropped with an error in the log.

It also runs the functions' recurring `ScheduleV2` events of the template (`rate(...)` only,
see devstack.template.recurring_schedules): each one first after one period from the start,
then every period by the loop's clock; missed runs are not made up, and a failed run is
logged and not retried (the template sets no retries either).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from mailer_core.base.clock import SYSTEM_CLOCK, Clock

from devstack.functions import FunctionRegistry
from devstack.template import RecurringSchedule

log = logging.getLogger(__name__)

_AT = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")
DEFAULT_MAX_ATTEMPTS = 3


def parse_at(expression: str, timezone_name: str | None = None) -> datetime | None:
    """The UTC time of an `at(yyyy-mm-ddThh:mm:ss)` expression; None for rate()/cron()."""
    match = _AT.match(expression.strip())
    if not match:
        return None
    local = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S")
    return local.replace(tzinfo=ZoneInfo(timezone_name or "UTC")).astimezone(UTC)


@dataclass(frozen=True)
class _Due:
    key: tuple[str, ...]
    group: str
    name: str
    at: datetime
    schedule: dict[str, Any]


@dataclass
class ShiftedClock(Clock):
    """Another clock's time plus an offset (seconds) that `DevStack.fast_forward` grows."""

    base: Clock = field(default_factory=Clock)
    offset: float = 0.0

    def now(self) -> datetime:
        return self.base.now() + timedelta(seconds=self.offset)


class SchedulerLoop:
    """Fires due one-time schedules; `tick()` does one pass, `start()` runs it every `interval` s."""

    def __init__(
        self,
        scheduler: Any,
        sqs: Any,
        functions: FunctionRegistry,
        groups: list[str],
        *,
        clock: Clock = SYSTEM_CLOCK,
        interval: float = 1.0,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        recurring: list[RecurringSchedule] | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.sqs = sqs
        self.functions = functions
        self.groups = list(groups)
        self.clock = clock
        self.interval = interval
        self.max_attempts = max_attempts
        self._completed: set[tuple[str, ...]] = set()
        self._attempts: dict[tuple[str, ...], int] = {}
        self._ignored: set[tuple[str, ...]] = set()
        self._queue_urls: dict[str, str] = {}
        self._recurring: list[tuple[RecurringSchedule, list[datetime]]] = [
            (schedule, []) for schedule in recurring or []
        ]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="scheduler-loop", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("scheduler loop: a tick failed")
            self._stop.wait(self.interval)

    def tick(self) -> list[str]:
        """Fire every due schedule once; return "group/name" of each one tried."""
        with self._lock:
            tried = []
            for due in sorted(self._due(), key=lambda d: d.at):
                self._fire(due)
                tried.append(f"{due.group}/{due.name}")
            tried += self._run_recurring()
            return tried

    def _run_recurring(self) -> list[str]:
        """Run each recurring event whose time has come; the first run is one period after start."""
        now = self.clock.now()
        ran = []
        for schedule, next_run in self._recurring:
            period = timedelta(seconds=schedule.period_seconds)
            if not next_run:
                next_run.append(now + period)
                continue
            if now < next_run[0]:
                continue
            while next_run[0] <= now:
                next_run[0] += period
            name = f"{schedule.function_id}.{schedule.event_name}"
            try:
                self.functions.get(schedule.function_id).invoke(dict(schedule.input))
            except Exception:
                log.exception("recurring schedule %s failed", name)
            ran.append(name)
        return ran

    def _list(self, group: str) -> list[dict[str, Any]]:
        summaries: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"GroupName": group, "State": "ENABLED"}
        while True:
            page = self.scheduler.list_schedules(**kwargs)
            summaries.extend(page.get("Schedules") or [])
            token = page.get("NextToken")
            if not token:
                return summaries
            kwargs["NextToken"] = token

    def _due(self) -> list[_Due]:
        now = self.clock.now()
        due = []
        for group in self.groups:
            for summary in self._list(group):
                name = summary["Name"]
                try:
                    schedule = self.scheduler.get_schedule(Name=name, GroupName=group)
                except self.scheduler.exceptions.ResourceNotFoundException:
                    continue  # deleted since it was listed
                key = (
                    group,
                    name,
                    str(schedule.get("CreationDate")),
                    str(schedule.get("LastModificationDate")),
                )
                if key in self._completed or schedule.get("State", "ENABLED") != "ENABLED":
                    continue
                expression = schedule.get("ScheduleExpression", "")
                try:
                    at = parse_at(expression, schedule.get("ScheduleExpressionTimezone"))
                except (ValueError, KeyError) as error:
                    log.error("schedule %s/%s: cannot read %r: %s", group, name, expression, error)
                    self._completed.add(key)
                    continue
                if at is None:
                    if key not in self._ignored:
                        self._ignored.add(key)
                        log.warning(
                            "schedule %s/%s: %r is not fired locally (only at())", group, name, expression
                        )
                    continue
                if at <= now:
                    due.append(_Due(key, group, name, at, schedule))
        return due

    def _fire(self, due: _Due) -> None:
        target = due.schedule["Target"]
        try:
            self._deliver(target)
        except Exception:
            attempts = self._attempts.get(due.key, 0) + 1
            self._attempts[due.key] = attempts
            if attempts < self.max_attempts:
                log.warning(
                    "schedule %s/%s: target failed (attempt %d of %d)",
                    due.group,
                    due.name,
                    attempts,
                    self.max_attempts,
                    exc_info=True,
                )
                return
            log.exception("schedule %s/%s: target failed %d times, dropped", due.group, due.name, attempts)
        else:
            log.info("schedule %s/%s fired at %s", due.group, due.name, target["Arn"])
        self._attempts.pop(due.key, None)
        self._completed.add(due.key)
        if due.schedule.get("ActionAfterCompletion") == "DELETE":
            # The target may have deleted it already.
            with contextlib.suppress(self.scheduler.exceptions.ResourceNotFoundException):
                self.scheduler.delete_schedule(Name=due.name, GroupName=due.group)

    def _deliver(self, target: dict[str, Any]) -> None:
        arn = target["Arn"]
        service = arn.split(":")[2]
        if service == "lambda":
            function = self.functions.by_arn(arn)
            if function is None:
                raise LookupError(f"no function of the template has the ARN {arn}")
            raw = target.get("Input")
            function.invoke(json.loads(raw) if raw else {})
        elif service == "sqs":
            kwargs: dict[str, Any] = {
                "QueueUrl": self._queue_url(arn),
                "MessageBody": target.get("Input") or "{}",
            }
            group_id = (target.get("SqsParameters") or {}).get("MessageGroupId")
            if group_id:
                kwargs["MessageGroupId"] = group_id
            self.sqs.send_message(**kwargs)
        else:
            raise ValueError(f"target {arn} is not a Lambda function or an SQS queue")

    def _queue_url(self, arn: str) -> str:
        if arn not in self._queue_urls:
            _, _, _, _, account, name = arn.split(":", 5)
            url = self.sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
            self._queue_urls[arn] = url
        return self._queue_urls[arn]
