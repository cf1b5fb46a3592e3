"""Read infra/template.yaml and translate it with the SAM translator, offline.

The translator refuses local `CodeUri`/`ContentUri`; like SAM CLI and cfn-lint we rewrite
them to `s3://` URIs first. Managed policy names resolve from the translator's bundled map;
a name missing there would make the translator ask IAM, which these tests refuse.

The helpers below also read references (`Ref`, `Fn::GetAtt`, `Fn::Sub`) and IAM statements
of the translated template, so that the rules can talk about logical ids.
"""

from __future__ import annotations

import copy
import fnmatch
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "infra" / "template.yaml"
LOCAL_URI_KEYS = ("CodeUri", "ContentUri", "DefinitionUri")
REGION = "us-east-1"

Template = dict[str, Any]


def load_source(path: Path = TEMPLATE_PATH) -> Template:
    return dict(yaml_parse(path.read_text(encoding="utf-8")))


def local_path(source_uri: str) -> Path:
    """Where a template-relative `CodeUri`/`ContentUri` points on disk."""
    return (TEMPLATE_PATH.parent / source_uri).resolve()


def _refuse_iam() -> dict[str, str]:
    raise AssertionError("a managed policy is missing from the translator's bundled map: it would call IAM")


def translate(source: Template) -> Template:
    """The CloudFormation the SAM transform makes of `source` (which is not changed)."""
    tpl = copy.deepcopy(source)
    for logical, resource in tpl.get("Resources", {}).items():
        props = resource.get("Properties") or {}
        for key in LOCAL_URI_KEYS:
            if isinstance(props.get(key), str) and not props[key].startswith("s3://"):
                props[key] = f"s3://mailer-artifacts/{logical}/{key}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        translator = Translator(None, Parser())
        try:
            return dict(
                translator.translate(
                    sam_template=tpl, parameter_values={}, get_managed_policy_map=_refuse_iam
                )
            )
        except InvalidDocumentException as exc:
            causes = "; ".join(cause.message for cause in exc.causes)
            raise AssertionError(f"SAM translation failed: {causes}") from None
        finally:
            translator.metrics.publish()  # to its offline dummy publisher; else it warns at exit


# ---------------------------------------------------------------- resources and references


def resources(tpl: Template, kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in tpl.get("Resources", {}).items() if v.get("Type") == kind}


def props(resource: dict[str, Any]) -> dict[str, Any]:
    return dict(resource.get("Properties") or {})


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


_SUB_TOKEN = re.compile(r"\$\{([^!}][^}]*)\}")


def sub_text(expr: Any) -> str:
    """The text of a string or `Fn::Sub` expression; "" for anything else."""
    if isinstance(expr, str):
        return expr
    if isinstance(expr, dict) and "Fn::Sub" in expr:
        value = expr["Fn::Sub"]
        return str(value[0] if isinstance(value, list) else value)
    return ""


def referenced_ids(expr: Any) -> set[str]:
    """Logical ids and parameters an expression refers to (pseudo parameters left out)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
            return
        if not isinstance(node, dict):
            return
        if isinstance(node.get("Ref"), str):
            found.add(node["Ref"])
        if "Fn::GetAtt" in node:
            target = node["Fn::GetAtt"]
            found.add(str(target[0] if isinstance(target, list) else target.split(".", 1)[0]))
        if "Fn::Sub" in node:
            value = node["Fn::Sub"]
            text, local = (value[0], value[1]) if isinstance(value, list) else (value, {})
            found.update(t.split(".", 1)[0] for t in _SUB_TOKEN.findall(str(text)) if t not in local)
            walk(local)
            return
        for child in node.values():
            walk(child)

    walk(expr)
    return {name for name in found if not name.startswith("AWS::")}


def single_ref(expr: Any) -> str:
    ids = referenced_ids(expr)
    assert len(ids) == 1, f"expected one reference in {expr!r}"
    return ids.pop()


def is_wildcard(resource: Any) -> bool:
    """`*`, or a pattern with `*` that names no resource of the stack (e.g. `table/*`)."""
    return "*" in sub_text(resource) and not referenced_ids(resource)


# ---------------------------------------------------------------- functions and IAM


def function_roles(translated: Template) -> dict[str, str]:
    """Function logical id -> the logical id of its execution role."""
    return {
        fn: single_ref(props(res)["Role"])
        for fn, res in resources(translated, "AWS::Lambda::Function").items()
    }


def statements(document: Any) -> list[dict[str, Any]]:
    return [s for s in as_list((document or {}).get("Statement")) if isinstance(s, dict)]


def role_statements(translated: Template, role: str) -> list[dict[str, Any]]:
    """Identity statements of a role: inline policies, and stack policies attached to it."""
    role_props = props(translated["Resources"][role])
    found = [
        s for policy in as_list(role_props.get("Policies")) for s in statements(policy.get("PolicyDocument"))
    ]
    attached = referenced_ids(role_props.get("ManagedPolicyArns"))
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for logical, res in resources(translated, kind).items():
            if role in referenced_ids(props(res).get("Roles")) or logical in attached:
                found += statements(props(res).get("PolicyDocument"))
    return found


def action_matches(action: str, statement: dict[str, Any]) -> bool:
    def hit(patterns: Any) -> bool:
        return any(fnmatch.fnmatchcase(action.lower(), str(p).lower()) for p in as_list(patterns))

    if "NotAction" in statement:
        return not hit(statement["NotAction"])
    return hit(statement.get("Action"))


def allows(
    stmts: list[dict[str, Any]], action: str, target: Callable[[Any], bool]
) -> Iterator[dict[str, Any]]:
    """The Allow statements granting `action` on a resource `target` accepts (or on any)."""
    for statement in stmts:
        if statement.get("Effect") != "Allow" or not action_matches(action, statement):
            continue
        if "NotResource" in statement or any(
            is_wildcard(r) or target(r) for r in as_list(statement.get("Resource"))
        ):
            yield statement


def names(logical: str) -> Callable[[Any], bool]:
    """A target predicate: the resource expression refers to `logical`."""
    return lambda expr: logical in referenced_ids(expr)


def names_function(source: Template, logical: str) -> Callable[[Any], bool]:
    """Refers to a function by logical id, or by the ARN built from its `FunctionName`."""
    fn_name = sub_text(props(source["Resources"][logical]).get("FunctionName"))

    def target(expr: Any) -> bool:
        text = sub_text(expr)
        return logical in referenced_ids(expr) or bool(fn_name and text.endswith(f"function:{fn_name}"))

    return target
