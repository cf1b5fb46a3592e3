"""Invocations running at once in the local stack each see their own Powertools event.

Powertools' event handler keeps the current event and Lambda context on a class that the whole
process shares (`BaseRouter.current_event`, `BaseRouter.lambda_context`). That is harmless in
Lambda, where an execution environment runs one invocation at a time, but the local stack runs
many invocations at once in one process (a thread each), so a request could be answered with
another one's query string. `isolate_invocations()` keeps both values per thread, as separate
environments would: a descriptor on the class (for reads and writes through resolvers and
routers) and the same descriptor on its metaclass (for Powertools' writes to the class itself).
"""

from __future__ import annotations

import threading
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import BaseRouter

_SHARED_ATTRIBUTES = ("current_event", "lambda_context")
_lock = threading.Lock()


class _PerThread:
    """A data descriptor holding one value per thread."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._values = threading.local()

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        try:
            return self._values.value
        except AttributeError:
            raise AttributeError(self._name) from None

    def __set__(self, obj: object, value: Any) -> None:
        self._values.value = value


def isolate_invocations() -> None:
    """Make the shared event-handler state per thread (once per process; later calls do nothing)."""
    with _lock:
        if getattr(type(BaseRouter), "_mailer_per_thread", False):
            return
        descriptors = {name: _PerThread(name) for name in _SHARED_ATTRIBUTES}
        for name, descriptor in descriptors.items():
            setattr(BaseRouter, name, descriptor)  # instances read and write through it
        meta = type("PerThreadRouterMeta", (type(BaseRouter),), {**descriptors, "_mailer_per_thread": True})
        setattr(BaseRouter, "__class__", meta)  # noqa: B010 - the class's own reads and writes go through it too
