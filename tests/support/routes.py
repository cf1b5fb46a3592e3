"""The API routes infra/template.yaml declares for a function."""

from __future__ import annotations

from devstack.resources import load_template


def template_routes(function: str = "ApiFunction") -> set[tuple[str, str]]:
    events = load_template()["Resources"][function]["Properties"]["Events"]
    return {
        (e["Properties"]["Method"].upper(), e["Properties"]["Path"])
        for e in events.values()
        if e["Type"] == "HttpApi"
    }
