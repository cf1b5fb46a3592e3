"""Load the template's handlers in this process and call them with a Lambda-like context.

Every function's handler module is imported from its file under a name of its own, so the
five `handler.py` files do not shadow each other in `sys.modules`. As in Lambda, the
function's code folder is put on `sys.path` (Lambda puts /var/task there), so a handler can
import modules next to it; those sibling modules share one process here, so their names must
differ between functions.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from devstack.invocations import isolate_invocations
from devstack.template import FunctionDef

log = logging.getLogger(__name__)

Handler = Callable[[Any, Any], Any]


class FakeLambdaContext:
    """The attributes and method of Lambda's Python context object that code may use."""

    def __init__(self, function: FunctionDef) -> None:
        self.function_name = function.function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = function.arn
        self.memory_limit_in_mb = function.memory_size
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function.function_name}"
        self.log_stream_name = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + function.timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _module_name(function: FunctionDef, module_path: str) -> str:
    safe = re.sub(r"\W", "_", f"{function.logical_id}_{module_path}")
    return f"_devstack_functions.{safe}"


@dataclass
class LocalFunction:
    """One function of the template, callable in-process.

    With `isolated` (the local stack), invocations behave as Lambda's execution environments:
    each environment runs one invocation at a time, and an invocation that arrives while every
    environment is busy gets a new one (a fresh import of the handler module, a cold start).
    So a handler's module globals (a Powertools resolver's current event, a batch processor,
    an SMTP pool) are never used by two invocations at once, as in Lambda. `handler()` is the
    first environment, where invocations one after another keep running.
    """

    definition: FunctionDef
    isolated: bool = False

    def __post_init__(self) -> None:
        self._handler: Handler | None = None
        self._lock = threading.Lock()
        self._idle: list[Handler] = []  # environments waiting for an invocation
        self._environments = 0

    @property
    def logical_id(self) -> str:
        return self.definition.logical_id

    @property
    def arn(self) -> str:
        return self.definition.arn

    def handler(self) -> Handler:
        """Import the handler module once (like a cold start) and return the handler."""
        with self._lock:
            if self._handler is None:
                self._handler = self._load()
            return self._handler

    def _checkout(self) -> Handler:
        first = self.handler()
        if not self.isolated:
            return first
        with self._lock:
            if self._environments == 0:
                self._environments = 1
                return first
            if first in self._idle:  # the first environment whenever it is free
                self._idle.remove(first)
                return first
            if self._idle:
                return self._idle.pop()
            self._environments += 1
            number = self._environments
        return self._load(environment=number)

    def _checkin(self, handler: Handler) -> None:
        if self.isolated:
            with self._lock:
                self._idle.append(handler)

    def _load(self, environment: int = 1) -> Handler:
        isolate_invocations()  # Powertools' class-level event, per thread as per environment
        fn = self.definition
        module_path, _, attribute = fn.handler.rpartition(".")
        if not module_path:
            raise ValueError(f"{fn.logical_id}: Handler {fn.handler!r} is not module.function")
        file = fn.code_dir / (module_path.replace(".", "/") + ".py")
        if not file.is_file():
            raise FileNotFoundError(f"{fn.logical_id}: handler module {file} does not exist")
        code_dir = str(fn.code_dir)
        if code_dir not in sys.path:
            sys.path.insert(0, code_dir)
        name = _module_name(fn, module_path) + (f"_env{environment}" if environment > 1 else "")
        spec = importlib.util.spec_from_file_location(name, file)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {file}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        handler = getattr(module, attribute)
        if not callable(handler):
            raise TypeError(f"{fn.logical_id}: {fn.handler} is not callable")
        return handler  # type: ignore[no-any-return]

    def invoke(self, event: Any) -> Any:
        """Call the handler as Lambda would; exceptions propagate to the caller."""
        context = FakeLambdaContext(self.definition)
        handler = self._checkout()
        started = time.monotonic()
        try:
            return handler(event, context)
        finally:
            self._checkin(handler)
            elapsed = time.monotonic() - started
            if elapsed > self.definition.timeout:
                log.warning(
                    "%s ran %.1f s, longer than its %d s timeout: Lambda would have stopped it",
                    self.logical_id,
                    elapsed,
                    self.definition.timeout,
                )


class FunctionRegistry:
    """The template's functions by logical id and by ARN."""

    def __init__(self, definitions: Iterable[FunctionDef], *, isolated: bool = False) -> None:
        self._by_id = {d.logical_id: LocalFunction(d, isolated=isolated) for d in definitions}

    def __iter__(self) -> Iterator[LocalFunction]:
        return iter(self._by_id.values())

    def get(self, logical_id: str) -> LocalFunction:
        return self._by_id[logical_id]

    def by_arn(self, arn: str) -> LocalFunction | None:
        """The function an ARN (optionally qualified, `:$LATEST` or an alias) or a name names."""
        parts = arn.split(":")
        name = parts[6] if arn.startswith("arn:") and len(parts) >= 7 else arn
        for function in self._by_id.values():
            if function.definition.function_name == name:
                return function
        return None

    def load_all(self) -> None:
        """Import every handler now, so a broken module fails at start-up, not on first use."""
        for function in self._by_id.values():
            function.handler()
