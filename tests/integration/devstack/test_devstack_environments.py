"""Execution environments: in the local stack an environment runs one invocation at a time, as in Lambda."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from devstack.functions import FunctionRegistry
from devstack.resources import StackResources, load_template
from devstack.template import function_definitions
from tests.support.api_client import http_event
from tests.support.stack_helpers import write_project

TEMPLATE = """
Resources:
  BusyFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ../functions/busy
      Handler: handler.lambda_handler
      Timeout: 10
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ../functions/echo
      Handler: handler.lambda_handler
      Timeout: 10
"""

# A handler that keeps per-invocation state in a module global, as a Powertools resolver does.
BUSY = """
import threading, time
CURRENT = [None]
OVERLAPS = []
SEEN = []

def lambda_handler(event, context):
    if CURRENT[0] is not None:
        OVERLAPS.append((CURRENT[0], event))
    CURRENT[0] = event
    SEEN.append(event)
    time.sleep(event.get("sleep", 0))
    CURRENT[0] = None
    return {"module": __name__}
"""


# A Powertools resolver: it keeps the current event on a class the whole process shares.
ECHO = """
import time
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

app = APIGatewayHttpResolver()

@app.get("/echo")
def echo():
    first = app.current_event.get_query_string_value("n")
    time.sleep(0.05)  # the other invocations resolve meanwhile
    return {"first": first, "then": app.current_event.get_query_string_value("n")}

def lambda_handler(event, context):
    return app.resolve(event, context)
"""


def registry(tmp_path: Path, *, isolated: bool) -> FunctionRegistry:
    path = write_project(tmp_path, TEMPLATE, {"busy": BUSY, "echo": ECHO})
    definitions = function_definitions(load_template(path), StackResources("envs"), path.parent)
    return FunctionRegistry(definitions, isolated=isolated)


def _globals(registry: FunctionRegistry) -> dict[str, Any]:
    return registry.get("BusyFunction").handler().__globals__  # type: ignore[no-any-return]


def test_given_isolated_environments_then_concurrent_invocations_never_share_module_state(
    tmp_path: Path,
) -> None:
    functions = registry(tmp_path, isolated=True)
    busy = functions.get("BusyFunction")
    start = threading.Barrier(4)

    def invoke(n: int) -> str:
        start.wait()
        return str(busy.invoke({"n": n, "sleep": 0.2})["module"])

    with ThreadPoolExecutor(4) as pool:
        modules = list(pool.map(invoke, range(4)))

    assert len(set(modules)) == 4  # four environments, one per concurrent invocation
    assert _globals(functions)["OVERLAPS"] == []


def test_given_isolated_environments_then_invocations_one_after_another_run_in_the_first(
    tmp_path: Path,
) -> None:
    functions = registry(tmp_path, isolated=True)
    busy = functions.get("BusyFunction")
    with ThreadPoolExecutor(2) as pool:  # a second environment exists from now on
        list(pool.map(lambda n: busy.invoke({"n": n, "sleep": 0.1}), range(2)))

    for n in range(3):
        busy.invoke({"n": 10 + n})

    assert [e["n"] for e in _globals(functions)["SEEN"]][-3:] == [10, 11, 12]


def test_without_isolation_every_invocation_shares_one_module(tmp_path: Path) -> None:
    functions = registry(tmp_path, isolated=False)  # what the pollers' own tests count calls with
    busy = functions.get("BusyFunction")

    with ThreadPoolExecutor(3) as pool:
        modules = set(pool.map(lambda n: busy.invoke({"n": n, "sleep": 0.1})["module"], range(3)))

    assert len(modules) == 1


def test_concurrent_requests_each_see_their_own_powertools_event(tmp_path: Path) -> None:
    echo = registry(tmp_path, isolated=True).get("EchoFunction")
    start = threading.Barrier(5)

    def ask(n: int) -> dict[str, Any]:
        start.wait()
        answer = echo.invoke(http_event("GET", f"/echo?n={n}"))
        return dict(json.loads(answer["body"]))

    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(ask, range(5)))

    assert answers == [{"first": str(n), "then": str(n)} for n in range(5)]
