"""The template's HTTP routes served on 127.0.0.1 by the handlers in this process.

For browser tests of the integration tier: the local gateway (devstack/gateway.py) routes as
API Gateway does, and each function is the test's own handler module (`load_handler`), so
it runs against the test's moto (`aws_stack`) and environment. The end-to-end tier uses the
whole local stack instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from devstack.gateway import Gateway
from devstack.resources import load_template
from devstack.template import http_routes
from tests.support.api_client import LambdaContext, load_handler


class _InProcessFunction:
    def __init__(self, folder: str) -> None:
        self.folder = folder

    def invoke(self, event: Any) -> Any:
        return load_handler(self.folder).lambda_handler(event, LambdaContext())


class _InProcessFunctions:
    """The part of devstack's FunctionRegistry the gateway uses, over `load_handler`."""

    def __init__(self, folders: dict[str, str]) -> None:
        self._functions = {logical: _InProcessFunction(folder) for logical, folder in folders.items()}

    def get(self, logical_id: str) -> _InProcessFunction:
        return self._functions[logical_id]


def _code_folders(template: dict[str, Any], wanted: set[str]) -> dict[str, str]:
    """Logical id → folder under functions/, for the functions whose folder is wanted."""
    found = {}
    for logical, resource in template["Resources"].items():
        code = str((resource.get("Properties") or {}).get("CodeUri", ""))
        folder = code.rstrip("/").rsplit("/", 1)[-1]
        if resource.get("Type") == "AWS::Serverless::Function" and folder in wanted:
            found[logical] = folder
    return found


@contextmanager
def served(*folders: str) -> Iterator[str]:
    """Serve the routes of the functions in `folders` (e.g. "track", "api"); yields the base URL."""
    template = load_template()
    code = _code_folders(template, set(folders))
    missing = set(folders) - set(code.values())
    assert not missing, f"no such functions in the template: {sorted(missing)}"
    routes = [r for r in http_routes(template) if r.function_id in code]
    gateway = Gateway(routes, _InProcessFunctions(code))  # type: ignore[arg-type]
    gateway.start()
    try:
        yield gateway.url
    finally:
        gateway.stop()
