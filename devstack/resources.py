"""Create the template's resources in moto and resolve the functions' environment.

infra/template.yaml is the only list of tables, queues, the key, the bucket and the schedule
group: this module reads it and creates each one, in a moto server (the local stack) or in
moto's in-process mock (the tests). It returns the environment variables the template gives
every function, with `!Ref`, `!GetAtt` and `!Sub` resolved to the created resources.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = ROOT / "infra" / "template.yaml"
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that keeps CloudFormation's short-form intrinsics as {"Fn::X": …}."""


def _construct_intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if name == "Fn::GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_intrinsic)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """The template as data (a copy of its own: callers may change it). Parsed once per version
    of the file: every test's stack reads it, and parsing the YAML is slow."""
    stat = path.stat()
    return copy.deepcopy(_parsed_template(str(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _parsed_template(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return dict(yaml.load(fh, Loader=_CfnLoader))


@dataclass
class StackResources:
    """What was created: physical names, ARNs and queue URLs by logical id."""

    stack_name: str
    refs: dict[str, str] = field(default_factory=dict)
    attrs: dict[tuple[str, str], str] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)

    def resolve(self, value: Any) -> Any:
        """Resolve Ref, GetAtt and Sub against the created resources."""
        if isinstance(value, dict) and len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Fn::GetAtt":
                logical, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.attrs[(logical, attr)]
            if key == "Fn::Sub":
                return self._sub(arg)
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value

    def _ref(self, name: str) -> str:
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::StackName": self.stack_name,
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self.refs[name]

    def _sub(self, arg: Any) -> str:
        text, local = (arg[0], arg[1]) if isinstance(arg, list) else (arg, {})

        def repl(match: re.Match[str]) -> str:
            token = match.group(1)
            if token in local:
                return str(self.resolve(local[token]))
            if "." in token and not token.startswith("AWS::"):
                logical, attr = token.split(".", 1)
                return self.attrs[(logical, attr)]
            return self._ref(token)

        return re.sub(r"\$\{([^}]+)\}", repl, text)


def _create_table(session: boto3.session.Session, name: str, props: dict[str, Any]) -> str:
    ddb = session.client("dynamodb")
    kwargs: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if props.get("GlobalSecondaryIndexes"):
        kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    arn = ddb.create_table(**kwargs)["TableDescription"]["TableArn"]
    ttl = props.get("TimeToLiveSpecification")
    if ttl:
        ddb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
    return str(arn)


def create_stack(
    session: boto3.session.Session,
    *,
    stack_name: str = "mailer-local",
    parameters: dict[str, str] | None = None,
    template: dict[str, Any] | None = None,
) -> StackResources:
    """Create every stateful resource of the template; return how to refer to them."""
    tpl = template or load_template()
    params = {k: str(v.get("Default", "")) for k, v in tpl.get("Parameters", {}).items()}
    params.update(parameters or {})
    stack = StackResources(stack_name=stack_name, parameters=params)
    resources: dict[str, Any] = tpl["Resources"]
    kinds = {
        "AWS::SQS::Queue": 0,  # dead-letter queues first: redrive policies refer to them
        "AWS::DynamoDB::Table": 1,
        "AWS::KMS::Key": 1,
        "AWS::S3::Bucket": 1,
        "AWS::Scheduler::ScheduleGroup": 1,
        "AWS::IAM::Role": 1,
        "AWS::SecretsManager::Secret": 1,
    }
    queues = [k for k, v in resources.items() if v["Type"] == "AWS::SQS::Queue"]
    queues.sort(key=lambda k: "RedrivePolicy" in resources[k].get("Properties", {}))
    others = [k for k, v in resources.items() if v["Type"] in kinds and v["Type"] != "AWS::SQS::Queue"]
    for logical in queues + others:
        kind = resources[logical]["Type"]
        props = stack.resolve(resources[logical].get("Properties", {}))
        physical = f"{stack_name}-{logical}"
        if kind == "AWS::DynamoDB::Table":
            stack.refs[logical] = physical
            stack.attrs[(logical, "Arn")] = _create_table(session, physical, props)
        elif kind == "AWS::SQS::Queue":
            sqs = session.client("sqs")
            attributes = {
                k: (
                    json.dumps(v)
                    if isinstance(v, dict)
                    else str(v).lower()
                    if isinstance(v, bool)
                    else str(v)
                )
                for k, v in props.items()
                if k in {"VisibilityTimeout", "MessageRetentionPeriod", "RedrivePolicy", "DelaySeconds"}
            }
            url = sqs.create_queue(QueueName=physical, Attributes=attributes)["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
            stack.refs[logical] = url
            stack.attrs[(logical, "Arn")] = arn
            stack.attrs[(logical, "QueueName")] = physical
        elif kind == "AWS::KMS::Key":
            meta = session.client("kms").create_key(Description=props.get("Description", logical))[
                "KeyMetadata"
            ]
            stack.refs[logical] = meta["KeyId"]
            stack.attrs[(logical, "Arn")] = meta["Arn"]
        elif kind == "AWS::S3::Bucket":
            name = physical.lower()
            session.client("s3").create_bucket(Bucket=name)
            stack.refs[logical] = name
            stack.attrs[(logical, "Arn")] = f"arn:aws:s3:::{name}"
        elif kind == "AWS::Scheduler::ScheduleGroup":
            name = props.get("Name", physical)
            arn = session.client("scheduler").create_schedule_group(Name=name)["ScheduleGroupArn"]
            stack.refs[logical] = name
            stack.attrs[(logical, "Arn")] = arn
        elif kind == "AWS::SecretsManager::Secret":
            # Seeded from the stack's parameters (the local stack's embedded defaults); Ref is the ARN.
            # An empty parameter (a test without that secret) creates none: its ARN is "".
            value = str(props.get("SecretString") or "")
            arn = (
                session.client("secretsmanager").create_secret(Name=physical, SecretString=value)["ARN"]
                if value
                else ""
            )
            stack.refs[logical] = arn
            stack.attrs[(logical, "Id")] = arn
        elif kind == "AWS::IAM::Role":
            # Roles are not created in moto; their ARN is all the functions need.
            stack.refs[logical] = physical
            stack.attrs[(logical, "Arn")] = f"arn:aws:iam::{ACCOUNT_ID}:role/{physical}"
    for logical, resource in resources.items():
        if resource["Type"] == "AWS::Serverless::HttpApi":
            # Its id only names the public URL (MAILER_PUBLIC_BASE_URL); the local stack
            # replaces that with its gateway's URL.
            stack.refs[logical] = "local"
    return stack


def function_environment(stack: StackResources, template: dict[str, Any] | None = None) -> dict[str, str]:
    """The Globals environment of the template's functions, resolved."""
    tpl = template or load_template()
    variables = tpl.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    return {k: str(stack.resolve(v)) for k, v in variables.items()}
