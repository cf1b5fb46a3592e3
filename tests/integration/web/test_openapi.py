"""The OpenAPI document, the template's routes and the api function's routes agree."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.support.api_client import ApiClient, load_handler
from tests.support.constants import TEST_AUDIENCE, TEST_SECRET
from tests.support.routes import template_routes

ROOT = Path(__file__).resolve().parents[3]
METHODS = {"get", "post", "put", "patch", "delete", "options", "head"}


def document() -> dict[str, Any]:
    return json.loads((ROOT / "docs" / "openapi.json").read_text(encoding="utf-8"))


def document_routes() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document()["paths"].items()
        for method in item
        if method in METHODS
    }


def resolver_routes() -> set[tuple[str, str]]:
    app = load_handler("api").app
    routes = set()
    for route in app._static_routes + app._dynamic_routes:
        path = re.sub(r"<(\w+)>", r"{\1}", route.path).replace("/.+", "/{proxy+}")
        routes.add((route.method.upper(), path))
    return routes


def test_every_template_route_is_documented_and_every_documented_route_exists() -> None:
    assert document_routes() == template_routes()


def test_the_api_function_serves_exactly_the_template_routes() -> None:
    assert resolver_routes() == template_routes()


def test_every_operation_says_how_it_authenticates_and_has_an_id() -> None:
    ids = []
    for path, item in document()["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            ids.append(op["operationId"])
            protected = path.startswith("/v1/") and method != "options"
            assert (op.get("security") == [{"widgetToken": []}]) is protected, (method, path)
    assert len(ids) == len(set(ids))


def test_every_schema_reference_resolves() -> None:
    doc = document()
    text = json.dumps(doc)
    for ref in set(re.findall(r'"\$ref": "#/([^"]+)"', text)):
        node: Any = doc
        for part in ref.split("/"):
            node = node[part]
        assert node


@pytest.mark.usefixtures("aws_stack")
def test_the_api_serves_the_document_it_is_tested_against() -> None:
    client = ApiClient(secret=TEST_SECRET, audience=TEST_AUDIENCE)
    reply = client.get("/openapi.json", auth=False)
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == document()


def test_the_track_functions_unsubscribe_routes_are_documented_as_public_pages() -> None:
    """The unsubscribe link's and the attachment download link's routes are the track
    function's, outside the api function's `paths`; the document lists them apart, with no
    token, and the template declares them."""
    pages = document()["x-public-pages"]["paths"]
    documented = {(m.upper(), path) for path, item in pages.items() for m in item if m in METHODS}
    track = {(m, p) for m, p in template_routes("TrackFunction") if p.startswith(("/u/", "/d/"))}
    assert (
        documented
        == track
        == {
            ("GET", "/u/{token}"),
            ("POST", "/u/{token}"),
            ("GET", "/d/{token}"),
            ("HEAD", "/d/{token}"),
        }
    )
    assert all(op["security"] == [] for item in pages.values() for m, op in item.items() if m in METHODS)
