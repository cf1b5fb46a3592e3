"""What the local stack needs to know about the template's functions and their events.

The template (infra/template.yaml) declares each function's code, handler, timeout, HTTP
routes and SQS event sources; this module reads them, merged with `Globals.Function` the way
SAM does, so the gateway, the pollers and the scheduler loop follow the template instead of a
second list kept by hand.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.resources import ACCOUNT_ID, REGION, TEMPLATE_PATH, StackResources

log = logging.getLogger(__name__)

FUNCTION_TYPE = "AWS::Serverless::Function"
DEFAULT_TIMEOUT = 3  # Lambda's default, when neither the function nor Globals set one
DEFAULT_MEMORY = 128
DEFAULT_BATCH_SIZE = 10


@dataclass(frozen=True)
class FunctionDef:
    """One AWS::Serverless::Function, resolved against the created stack."""

    logical_id: str
    code_dir: Path
    handler: str
    function_name: str
    arn: str
    timeout: int = DEFAULT_TIMEOUT
    memory_size: int = DEFAULT_MEMORY
    environment: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HttpRoute:
    """One `Type: HttpApi` event: a route of the HTTP API and the function behind it."""

    function_id: str
    event_name: str
    method: str | None  # upper case, "ANY" for any method; None for the $default route
    path: str | None  # API Gateway syntax: /v1/messages/{message_id}, /v1/{proxy+}
    api_id: str | None = None  # logical id of the AWS::Serverless::HttpApi, if given

    @property
    def route_key(self) -> str:
        if self.method is None or self.path is None:
            return "$default"
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class SqsEventSource:
    """One `Type: SQS` event: the queue a function consumes and how."""

    function_id: str
    event_name: str
    queue_arn: str
    batch_size: int = DEFAULT_BATCH_SIZE
    report_batch_item_failures: bool = False
    maximum_concurrency: int | None = None
    enabled: bool = True


def _functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each function's Properties, with Globals.Function merged in as SAM merges them."""
    globals_ = template.get("Globals", {}).get("Function", {})
    result: dict[str, dict[str, Any]] = {}
    for logical, resource in template.get("Resources", {}).items():
        if resource.get("Type") != FUNCTION_TYPE:
            continue
        props = {**globals_, **resource.get("Properties", {})}
        variables = {
            **globals_.get("Environment", {}).get("Variables", {}),
            **resource.get("Properties", {}).get("Environment", {}).get("Variables", {}),
        }
        props["Environment"] = {"Variables": variables}
        result[logical] = props
    return result


def function_arn(function_name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function_name}"


def function_definitions(
    template: dict[str, Any], stack: StackResources, template_dir: Path = TEMPLATE_PATH.parent
) -> list[FunctionDef]:
    """Every function of the template; CodeUri is relative to the template's folder."""
    definitions = []
    for logical, props in _functions(template).items():
        name = props.get("FunctionName")
        function_name = str(stack.resolve(name)) if name else f"{stack.stack_name}-{logical}"
        variables = props["Environment"]["Variables"]
        definitions.append(
            FunctionDef(
                logical_id=logical,
                code_dir=(template_dir / str(props["CodeUri"])).resolve(),
                handler=str(props["Handler"]),
                function_name=function_name,
                arn=function_arn(function_name),
                timeout=int(props.get("Timeout", DEFAULT_TIMEOUT)),
                memory_size=int(props.get("MemorySize", DEFAULT_MEMORY)),
                environment={k: str(stack.resolve(v)) for k, v in variables.items()},
            )
        )
    return definitions


def _events(template: dict[str, Any], kind: str) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for logical, props in _functions(template).items():
        for event_name, event in (props.get("Events") or {}).items():
            if event.get("Type") == kind:
                found.append((logical, event_name, event.get("Properties") or {}))
    return found


def http_routes(template: dict[str, Any]) -> list[HttpRoute]:
    """Every HttpApi route. Only payload format 2.0 (SAM's default for HttpApi) is served."""
    routes = []
    for logical, event_name, props in _events(template, "HttpApi"):
        version = str(props.get("PayloadFormatVersion", "2.0"))
        if version != "2.0":
            raise ValueError(f"{logical}.{event_name}: payload format {version} is not served locally")
        api = props.get("ApiId")
        api_id = api.get("Ref") if isinstance(api, dict) else api
        method = props.get("Method")
        routes.append(
            HttpRoute(
                function_id=logical,
                event_name=event_name,
                method=str(method).upper() if method else None,
                path=str(props["Path"]) if props.get("Path") else None,
                api_id=api_id,
            )
        )
    keys = [r.route_key for r in routes]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"routes declared twice: {', '.join(duplicates)}")
    return routes


def sqs_event_sources(template: dict[str, Any], stack: StackResources) -> list[SqsEventSource]:
    sources = []
    for logical, event_name, props in _events(template, "SQS"):
        scaling = props.get("ScalingConfig") or {}
        concurrency = scaling.get("MaximumConcurrency")
        sources.append(
            SqsEventSource(
                function_id=logical,
                event_name=event_name,
                queue_arn=str(stack.resolve(props["Queue"])),
                batch_size=int(props.get("BatchSize", DEFAULT_BATCH_SIZE)),
                report_batch_item_failures="ReportBatchItemFailures"
                in (props.get("FunctionResponseTypes") or []),
                maximum_concurrency=int(concurrency) if concurrency is not None else None,
                enabled=bool(props.get("Enabled", True)),
            )
        )
    return sources


@dataclass(frozen=True)
class RecurringSchedule:
    """One `Type: ScheduleV2` event with a `rate(...)` expression: a function run periodically."""

    function_id: str
    event_name: str
    period_seconds: float
    input: dict[str, Any] = field(default_factory=dict)


_RATE_UNITS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}


def parse_rate(expression: str) -> float | None:
    """Seconds between runs of a `rate(5 minutes)` expression; None for cron() and at()."""
    match = re.fullmatch(r"rate\((\d+)\s+(minutes?|hours?|days?)\)", expression.strip())
    if not match or int(match.group(1)) < 1:
        return None
    return int(match.group(1)) * _RATE_UNITS[match.group(2)]


def recurring_schedules(template: dict[str, Any]) -> list[RecurringSchedule]:
    """Every ScheduleV2 (and Schedule) event of the template's functions that runs at a rate."""
    found = []
    for kind in ("ScheduleV2", "Schedule"):
        for logical, event_name, props in _events(template, kind):
            expression = str(props.get("ScheduleExpression") or props.get("Schedule") or "")
            period = parse_rate(expression)
            if period is None:
                log.warning("%s.%s: %r is not run locally (only rate())", logical, event_name, expression)
                continue
            if props.get("State", "ENABLED") != "ENABLED" or props.get("Enabled") is False:
                continue
            raw = props.get("Input")
            found.append(RecurringSchedule(logical, event_name, period, json.loads(raw) if raw else {}))
    return found


def schedule_groups(template: dict[str, Any], stack: StackResources) -> list[str]:
    """Names of the template's schedule groups, as created in the stack."""
    return [
        stack.refs[logical]
        for logical, resource in template.get("Resources", {}).items()
        if resource.get("Type") == "AWS::Scheduler::ScheduleGroup"
    ]
