"""The whole backend on 127.0.0.1: moto, the template's resources, the gateway, the SQS
pollers and the scheduler loop, with every handler running in this process.

    local_servers = {"MAILER_ALLOW_PLAINTEXT_SMTP": "1", "MAILER_ALLOW_LOOPBACK_MAILBOXES": "1"}
    with DevStack(extra_env=local_servers) as stack:
        requests.post(f"{stack.api_url}/v1/messages", ...)
        stack.drain()

Starting sets `os.environ` to what the template gives the functions plus the moto endpoint
and fake credentials (stopping puts the old values back), because the handlers read their
settings from the environment. It also resets moto's state: one process holds one moto, and
so one local stack at a time.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3
from mailer_core.base import config
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.store import models

from devstack.functions import FunctionRegistry
from devstack.gateway import Gateway
from devstack.moto_server import MotoServer, local_aws_environment, start_moto_server
from devstack.pollers import Pollers
from devstack.resources import (
    TEMPLATE_PATH,
    StackResources,
    create_stack,
    function_environment,
    load_template,
)
from devstack.scheduler_loop import SchedulerLoop, ShiftedClock
from devstack.template import (
    function_definitions,
    http_routes,
    recurring_schedules,
    schedule_groups,
    sqs_event_sources,
)

log = logging.getLogger(__name__)


class DevStack:
    """Starts and stops the local stack; see the module docstring."""

    def __init__(
        self,
        *,
        template_path: Path = TEMPLATE_PATH,
        stack_name: str = "mailer-local",
        parameters: dict[str, str] | None = None,
        extra_env: dict[str, str] | None = None,
        gateway_port: int = 0,
        moto_port: int = 0,
        clock: Clock = SYSTEM_CLOCK,
        scheduler_interval: float = 1.0,
        preload_handlers: bool = True,
    ) -> None:
        self.template_path = template_path
        self.template: dict[str, Any] = load_template(template_path)
        self.stack_name = stack_name
        self.parameters = dict(parameters or {})
        self.extra_env = dict(extra_env or {})
        self.gateway_port = gateway_port
        self.moto_port = moto_port
        self.clock = clock
        # The scheduler loop's own time: `fast_forward` moves it so a demo need not wait a day.
        self.scheduler_clock = ShiftedClock(clock)
        self.scheduler_interval = scheduler_interval
        self.preload_handlers = preload_handlers
        self.moto: MotoServer | None = None
        self.resources: StackResources | None = None
        self.functions: FunctionRegistry | None = None
        self.gateway: Gateway | None = None
        self.pollers: Pollers | None = None
        self.scheduler: SchedulerLoop | None = None
        self.environment: dict[str, str] = {}
        self._saved_env: dict[str, str | None] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> DevStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.moto = start_moto_server(self.moto_port)
        self.moto.reset()
        aws_env = local_aws_environment(self.moto.endpoint)
        self._apply_env(aws_env)
        session = boto3.session.Session()
        self.resources = create_stack(
            session, stack_name=self.stack_name, parameters=self.parameters, template=self.template
        )
        definitions = function_definitions(self.template, self.resources, self.template_path.parent)
        env = function_environment(self.resources, self.template)
        for definition in definitions:
            for name, value in definition.environment.items():
                if env.setdefault(name, value) != value:
                    log.warning("functions set %s to different values; one process has one environment", name)
        self.environment = {**aws_env, **env, **self.extra_env}
        self._apply_env(self.environment)
        config.reset_settings()
        models.reset_connections()

        self.functions = FunctionRegistry(definitions, isolated=True)  # one invocation per environment
        if self.preload_handlers:
            self.functions.load_all()
        sqs = session.client("sqs", endpoint_url=self.moto.endpoint)
        self.gateway = Gateway(
            http_routes(self.template), self.functions, port=self.gateway_port, clock=self.clock
        )
        self.pollers = Pollers(sqs_event_sources(self.template, self.resources), self.functions, sqs)
        self.scheduler = SchedulerLoop(
            session.client("scheduler", endpoint_url=self.moto.endpoint),
            sqs,
            self.functions,
            schedule_groups(self.template, self.resources),
            clock=self.scheduler_clock,
            interval=self.scheduler_interval,
            recurring=recurring_schedules(self.template),
        )
        self.gateway.start()
        if "MAILER_PUBLIC_BASE_URL" not in self.extra_env:  # tracked links point at the gateway
            self.environment["MAILER_PUBLIC_BASE_URL"] = self.gateway.url
            self._apply_env({"MAILER_PUBLIC_BASE_URL": self.gateway.url})
            config.reset_settings()
        self.pollers.start()
        self.scheduler.start()
        log.info("local stack up: API %s, AWS %s", self.api_url, self.aws_endpoint)

    def stop(self) -> None:
        """Stop everything started, in reverse order; safe to call more than once."""
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None
        if self.pollers is not None:
            self.pollers.stop()
            self.pollers = None
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None
        if self.moto is not None:
            self.moto.stop()
            self.moto = None
        self._restore_env()
        config.reset_settings()
        models.reset_connections()

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ environment
    def _apply_env(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            if name not in self._saved_env:
                self._saved_env[name] = os.environ.get(name)
            os.environ[name] = value

    def _restore_env(self) -> None:
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()

    # ------------------------------------------------------------------ use
    @property
    def api_url(self) -> str:
        if self.gateway is None:
            raise RuntimeError("the local stack is not running")
        return self.gateway.url

    @property
    def aws_endpoint(self) -> str:
        if self.moto is None:
            raise RuntimeError("the local stack is not running")
        return self.moto.endpoint

    def fast_forward(self, seconds: float) -> None:
        """Let the scheduler loop live `seconds` ahead: schedules due by then fire at its next tick.

        Only the scheduler moves; the functions, the API and the stored times keep real time.
        """
        self.scheduler_clock.offset += seconds

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until no schedule is due, no queue holds a message and no handler runs.

        Fires due schedules itself (by the stack's clock), so a test with a FakeClock can
        advance the clock and drain. False if `timeout` seconds pass first.
        """
        if self.pollers is None or self.scheduler is None:
            raise RuntimeError("the local stack is not running")
        deadline = time.monotonic() + timeout
        while True:
            fired = self.scheduler.tick()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self.pollers.drain(remaining) and not fired and not self.scheduler.tick():
                return True
            if time.monotonic() >= deadline:
                return False
