"""Helpers for the local stack's tests: throwaway templates with tiny handlers.

The real handlers are written elsewhere, so these tests drive the machinery with tiny handler
modules written to tmp_path next to a small template, laid out like the repository
(infra/template.yaml and functions/<name>/handler.py).
"""

from __future__ import annotations

import sys
import textwrap
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3

from devstack.functions import FunctionRegistry
from devstack.resources import StackResources, create_stack, load_template
from devstack.template import function_definitions


def client(endpoint: str, service: str) -> Any:
    return boto3.session.Session().client(service, endpoint_url=endpoint, region_name="us-east-1")  # type: ignore[call-overload]


@dataclass
class MiniStack:
    """A small template, its handlers, and (when created) its resources."""

    template_path: Path
    template: dict[str, Any]
    resources: StackResources
    functions: FunctionRegistry

    def module(self, logical_id: str) -> ModuleType:
        """The loaded handler module of a function, to read what its handler recorded."""
        handler = self.functions.get(logical_id).handler()
        return sys.modules[handler.__module__]


def write_project(tmp_path: Path, template_yaml: str, handlers: dict[str, str]) -> Path:
    """Write infra/template.yaml and functions/<name>/handler.py; return the template path."""
    infra = tmp_path / "infra"
    infra.mkdir(parents=True, exist_ok=True)
    path = infra / "template.yaml"
    path.write_text(textwrap.dedent(template_yaml), encoding="utf-8")
    for name, source in handlers.items():
        folder = tmp_path / "functions" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "handler.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def mini_stack(
    tmp_path: Path, template_yaml: str, handlers: dict[str, str], *, create: bool = True
) -> MiniStack:
    """Write the project; create its resources in moto (AWS_ENDPOINT_URL) when `create`."""
    path = write_project(tmp_path, template_yaml, handlers)
    template = load_template(path)
    stack_name = f"t{uuid.uuid4().hex[:10]}"
    if create:
        resources = create_stack(boto3.session.Session(), stack_name=stack_name, template=template)
    else:
        resources = StackResources(stack_name=stack_name)
    registry = FunctionRegistry(function_definitions(template, resources, path.parent))
    return MiniStack(path, template, resources, registry)
