"""Each PynamoDB model's keys and indexes match the template table its settings point at.

The path from a model to its table is followed for real: the template gives every function
an environment variable per table (Globals), the settings read that variable, and the model
reads its table name from the settings. Each variable is set to the table's logical id here.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from mailer_core.base.config import Settings, from_environment, reset_settings
from mailer_core.store import models
from pynamodb.attributes import TTLAttribute
from pynamodb.models import Model

from tests.infrastructure.sam_offline import Template, load_source, props, referenced_ids, resources

SOURCE = load_source()
TABLES = resources(SOURCE, "AWS::DynamoDB::Table")
GLOBAL_ENV: dict[str, Any] = SOURCE["Globals"]["Function"]["Environment"]["Variables"]
TABLE_VARIABLES = {
    name: ids.pop()
    for name, expr in GLOBAL_ENV.items()
    if len(ids := referenced_ids(expr)) == 1 and ids <= set(TABLES)
}
SENTINEL = "template-table:"


@pytest.fixture
def table_of(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[type[Model], str | None]]:
    """Model -> logical id of the template table it would use (None: not a template table)."""
    for name, logical in TABLE_VARIABLES.items():
        monkeypatch.setenv(name, SENTINEL + logical)
    reset_settings()
    try:
        yield {
            model: name.removeprefix(SENTINEL)
            if (name := str(model.Meta.table_name)).startswith(SENTINEL)
            else None
            for model in models.ALL_MODELS
        }
    finally:
        reset_settings()


def _keys(key_schema: list[dict[str, str]]) -> dict[str, str]:
    return {k["KeyType"]: k["AttributeName"] for k in key_schema}


def schema_differences(model: type[Model], table: dict[str, Any]) -> list[str]:
    """How a model's key schema, key types, indexes and TTL differ from a table's properties."""
    schema: dict[str, Any] = dict(model._get_schema())
    p = props(table)
    problems = []
    if _keys(schema["key_schema"]) != _keys(p["KeySchema"]):
        problems.append(f"keys {_keys(schema['key_schema'])} != table {_keys(p['KeySchema'])}")
    table_types = {a["AttributeName"]: a["AttributeType"] for a in p["AttributeDefinitions"]}
    model_types = {a["AttributeName"]: a["AttributeType"] for a in schema["attribute_definitions"]}
    for index in schema["global_secondary_indexes"] + schema["local_secondary_indexes"]:
        model_types.update({a["AttributeName"]: a["AttributeType"] for a in index["attribute_definitions"]})
    if model_types != table_types:
        problems.append(f"key attribute types {model_types} != table {table_types}")
    for kind, model_key, table_key in (
        ("global", "global_secondary_indexes", "GlobalSecondaryIndexes"),
        ("local", "local_secondary_indexes", "LocalSecondaryIndexes"),
    ):
        ours = {
            i["index_name"]: (_keys(i["key_schema"]), i["projection"]["ProjectionType"])
            for i in schema[model_key]
        }
        theirs = {
            i["IndexName"]: (_keys(i["KeySchema"]), i["Projection"]["ProjectionType"])
            for i in p.get(table_key, [])
        }
        if ours != theirs:
            problems.append(f"{kind} indexes {ours} != table {theirs}")
    ttl_names = {a.attr_name for a in model.get_attributes().values() if isinstance(a, TTLAttribute)}
    spec = p.get("TimeToLiveSpecification") or {}
    table_ttl = {spec["AttributeName"]} if spec.get("Enabled") is True else set()
    if ttl_names != table_ttl:
        problems.append(f"TTL attribute {ttl_names or None} != table {table_ttl or None}")
    return problems


def test_every_table_variable_of_the_template_reaches_a_setting() -> None:
    assert TABLE_VARIABLES, "the template passes no table name to the functions"
    defaults = Settings()
    for name in TABLE_VARIABLES:
        changed = {
            k
            for k, v in vars(from_environment({name: "x-marks-the-table"})).items()
            if v != getattr(defaults, k)
        }
        assert changed, f"{name} is passed by the template but read by no setting"


@pytest.mark.parametrize("model", models.ALL_MODELS, ids=lambda m: m.__name__)
def test_model_matches_its_template_table(
    model: type[Model], table_of: dict[type[Model], str | None]
) -> None:
    logical = table_of[model]

    assert logical in TABLES, f"{model.__name__} uses no table of the template"
    assert schema_differences(model, TABLES[logical]) == []


def test_models_use_distinct_tables(table_of: dict[type[Model], str | None]) -> None:
    assert len(set(table_of.values())) == len(table_of)


def _swap_hash_and_range(p: dict[str, Any]) -> None:
    for key in p["KeySchema"]:
        key["KeyType"] = {"HASH": "RANGE", "RANGE": "HASH"}[key["KeyType"]]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_swap_hash_and_range, "keys"),
        (lambda p: p["AttributeDefinitions"][1].update(AttributeType="N"), "types"),
        (lambda p: p["GlobalSecondaryIndexes"][0].update(IndexName="by_state"), "global indexes"),
        (lambda p: p["GlobalSecondaryIndexes"][0]["KeySchema"].pop(), "global indexes"),
        (
            lambda p: p["GlobalSecondaryIndexes"][0].update(Projection={"ProjectionType": "KEYS_ONLY"}),
            "global",
        ),
        (lambda p: p.update(TimeToLiveSpecification={"AttributeName": "x", "Enabled": True}), "TTL"),
    ],
)
def test_a_drift_between_model_and_table_is_reported(change: Any, expected: str) -> None:
    broken: Template = copy.deepcopy(TABLES["MessagesTable"])
    change(broken["Properties"])

    assert any(expected in p for p in schema_differences(models.MessageModel, broken))


def test_every_model_of_the_store_is_listed_so_its_connection_is_reset_and_its_table_checked() -> None:
    # ALL_MODELS drives reset_connections (the local stack switching moto endpoints) and the
    # checks above: a model missing from it keeps talking to a stopped server.
    defined = {
        value
        for value in vars(models).values()
        if isinstance(value, type)
        and issubclass(value, Model)
        and value is not Model
        and value.__module__ == models.__name__
    }
    assert defined == set(models.ALL_MODELS)
