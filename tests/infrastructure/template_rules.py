"""Rules infra/template.yaml must keep; each returns a list of problems (empty when kept).

Each rule reads the translated CloudFormation (and the SAM source where only it says what
was meant), so the rules see what AWS would deploy, including what SAM adds by itself.
"""

from __future__ import annotations

import re
from typing import Any

from tests.infrastructure.sam_offline import (
    ROOT,
    Template,
    allows,
    as_list,
    function_roles,
    is_wildcard,
    local_path,
    names,
    names_function,
    props,
    referenced_ids,
    resources,
    role_statements,
    single_ref,
    statements,
    sub_text,
)

RUNTIME = "python3.13"  # supported until 2029
LAYER_DIR = ROOT / "shared"
MIN_CONCURRENCY, MAX_CONCURRENCY = 2, 1000
DEFAULT_TIMEOUT = 3  # Lambda's default function timeout
DEFAULT_VISIBILITY = 30  # SQS's default visibility timeout
DEFAULT_RETENTION = 345_600  # SQS's default retention (4 days)
SAM_MANAGED_POLICIES = {
    "AWSLambdaBasicExecutionRole",
    "AWSLambdaSQSQueueExecutionRole",
    "AWSXRayDaemonWriteAccess",
    "AWSXrayWriteOnlyAccess",
}
# Actions that cannot be scoped to a resource, allowed on "*" in function roles.
UNSCOPABLE_ACTIONS = {"xray:puttracesegments", "xray:puttelemetryrecords", "cloudwatch:putmetricdata"}
TABLE_WRITES = (
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:PartiQLInsert",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PartiQLDelete",
)
_ACCOUNT_ROOT = re.compile(r"^arn:(\$\{AWS::Partition\}|aws[\w-]*):iam::(\$\{AWS::AccountId\}|\d{12}):root$")


def _sqs_events(source: Template) -> list[tuple[str, str, str]]:
    """(function, event name, queue) for every SQS event of a SAM function."""
    found = []
    for fn, res in resources(source, "AWS::Serverless::Function").items():
        for event, spec in (props(res).get("Events") or {}).items():
            if spec.get("Type") == "SQS":
                found.append((fn, event, single_ref(spec["Properties"]["Queue"])))
    return found


def _sqs_mappings(translated: Template) -> dict[str, tuple[str, str]]:
    """Event source mapping -> (function, queue) for mappings that read an SQS queue."""
    queues = resources(translated, "AWS::SQS::Queue")
    found = {}
    for logical, res in resources(translated, "AWS::Lambda::EventSourceMapping").items():
        queue = single_ref(props(res).get("EventSourceArn"))
        if queue in queues:
            found[logical] = (single_ref(props(res)["FunctionName"]), queue)
    return found


def sqs_mapping_problems(source: Template, translated: Template) -> list[str]:
    problems = []
    mappings = _sqs_mappings(translated)
    pairs = sorted(mappings.values())
    for fn, event, queue in _sqs_events(source):
        if (fn, queue) not in pairs:
            problems.append(f"{fn}.{event}: no event source mapping reads {queue}")
    if len(pairs) != len(_sqs_events(source)):
        problems.append(f"{len(pairs)} SQS mappings for {len(_sqs_events(source))} SQS events")
    max_by_function: dict[str, int] = {}
    for logical, (fn, queue) in mappings.items():
        p = props(translated["Resources"][logical])
        if "ReportBatchItemFailures" not in as_list(p.get("FunctionResponseTypes")):
            problems.append(f"{logical} ({queue}): FunctionResponseTypes lacks ReportBatchItemFailures")
        concurrency = (p.get("ScalingConfig") or {}).get("MaximumConcurrency")
        if not isinstance(concurrency, int) or not MIN_CONCURRENCY <= concurrency <= MAX_CONCURRENCY:
            problems.append(f"{logical} ({queue}): MaximumConcurrency {concurrency!r} is not within 2..1000")
        else:
            max_by_function[fn] = max_by_function.get(fn, 0) + concurrency
    for fn, total in max_by_function.items():
        reserved = props(translated["Resources"][fn]).get("ReservedConcurrentExecutions")
        if isinstance(reserved, int) and reserved < total:
            problems.append(f"{fn}: reserved concurrency {reserved} < its mappings' maximum {total}")
    return problems


def queue_problems(translated: Template) -> list[str]:
    problems = []
    queues = resources(translated, "AWS::SQS::Queue")
    functions = resources(translated, "AWS::Lambda::Function")
    consumers: dict[str, list[str]] = {}
    for fn, queue in _sqs_mappings(translated).values():
        consumers.setdefault(queue, []).append(fn)
    dead_letter = {
        single_ref(props(q)["RedrivePolicy"]["deadLetterTargetArn"])
        for q in queues.values()
        if (props(q).get("RedrivePolicy") or {}).get("deadLetterTargetArn")
    }
    for queue, res in queues.items():
        p = props(res)
        if queue not in consumers:
            if queue not in dead_letter:
                problems.append(f"{queue}: no function consumes it and it is no dead-letter queue")
            continue
        redrive = p.get("RedrivePolicy") or {}
        dlq = redrive.get("deadLetterTargetArn")
        if not dlq or single_ref(dlq) not in queues:
            problems.append(f"{queue}: no RedrivePolicy to a dead-letter queue of this stack")
        else:
            if not isinstance(redrive.get("maxReceiveCount"), int) or redrive["maxReceiveCount"] < 1:
                problems.append(f"{queue}: RedrivePolicy.maxReceiveCount must be a positive integer")
            retention = p.get("MessageRetentionPeriod", DEFAULT_RETENTION)
            dlq_retention = props(queues[single_ref(dlq)]).get("MessageRetentionPeriod", DEFAULT_RETENTION)
            if dlq_retention < retention:
                # A message keeps its first enqueue time in the DLQ: a shorter retention drops it early.
                problems.append(f"{queue}: its dead-letter queue keeps messages shorter ({dlq_retention} s)")
        visibility = p.get("VisibilityTimeout", DEFAULT_VISIBILITY)
        for fn in consumers[queue]:
            timeout = props(functions[fn]).get("Timeout", DEFAULT_TIMEOUT)
            if visibility < 6 * timeout:
                problems.append(
                    f"{queue}: visibility timeout {visibility} s < 6 x {fn}'s timeout {timeout} s"
                )
    return problems


def table_problems(translated: Template) -> list[str]:
    problems = []
    for table, res in resources(translated, "AWS::DynamoDB::Table").items():
        p = props(res)
        if p.get("BillingMode") != "PAY_PER_REQUEST" or "ProvisionedThroughput" in p:
            problems.append(f"{table}: BillingMode is not PAY_PER_REQUEST")
        if (p.get("SSESpecification") or {}).get("SSEEnabled") is not True:
            problems.append(f"{table}: SSESpecification.SSEEnabled is not true")
        pitr = (p.get("PointInTimeRecoverySpecification") or {}).get("PointInTimeRecoveryEnabled") is True
        ttl = p.get("TimeToLiveSpecification") or {}
        if not pitr and not (ttl.get("Enabled") is True and ttl.get("AttributeName")):
            problems.append(
                f"{table}: neither point-in-time recovery nor a TTL (only short-lived facts may skip PITR)"
            )
    return problems


def _core_layers(source: Template, translated: Template) -> set[str]:
    """Translated layer versions built from shared/ (SAM appends a hash to the logical id)."""
    sources = {
        logical
        for logical, res in resources(source, "AWS::Serverless::LayerVersion").items()
        if isinstance(props(res).get("ContentUri"), str) and local_path(props(res)["ContentUri"]) == LAYER_DIR
    }
    return {
        logical
        for logical in resources(translated, "AWS::Lambda::LayerVersion")
        if any(logical.startswith(s) for s in sources)
    }


# Many branches on purpose: one check per rule of a function resource.
def function_problems(source: Template, translated: Template) -> list[str]:  # noqa: C901
    problems = []
    layers = _core_layers(source, translated)
    if not layers:
        problems.append("no layer is built from shared/")
    for logical in layers:
        p = props(translated["Resources"][logical])
        if RUNTIME not in as_list(p.get("CompatibleRuntimes")):
            problems.append(f"{logical}: CompatibleRuntimes lacks {RUNTIME}")
    for logical, res in resources(source, "AWS::Serverless::LayerVersion").items():
        if (res.get("Metadata") or {}).get("BuildMethod") != RUNTIME:
            problems.append(f"{logical}: Metadata.BuildMethod is not {RUNTIME}")
    for fn, res in resources(translated, "AWS::Lambda::Function").items():
        p = props(res)
        if p.get("Runtime") != RUNTIME:
            problems.append(f"{fn}: runtime {p.get('Runtime')!r}, expected {RUNTIME}")
        used = referenced_ids(p.get("Layers"))
        if not used & layers:
            problems.append(f"{fn}: does not use the core layer")
        for arch in as_list(p.get("Architectures")) or ["x86_64"]:
            for layer in used & layers:
                compatible = as_list(props(translated["Resources"][layer]).get("CompatibleArchitectures"))
                if compatible and arch not in compatible:
                    problems.append(f"{fn}: architecture {arch} is not compatible with {layer}")
    for fn, res in resources(source, "AWS::Serverless::Function").items():
        code = props(res).get("CodeUri")
        if not isinstance(code, str) or not local_path(code).is_dir():
            problems.append(f"{fn}: CodeUri {code!r} is not a folder of this repository")
    return problems


def _lifecycle_rules(bucket: dict[str, Any]) -> list[dict[str, Any]]:
    rules = (props(bucket).get("LifecycleConfiguration") or {}).get("Rules") or []
    return [r for r in rules if r.get("Status") == "Enabled"]


def bucket_problems(translated: Template) -> list[str]:
    """Only what the code says may go expires: old versions of the bodies (read by key, current
    version only) and pending uploads; never a current body (a failed message may be sent again)."""
    problems = []
    for bucket, res in resources(translated, "AWS::S3::Bucket").items():
        rules = _lifecycle_rules(res)
        bodies = [r for r in rules if r.get("Prefix") == "bodies/" and not r.get("TagFilters")]
        if not any((r.get("NoncurrentVersionExpiration") or {}).get("NoncurrentDays") for r in bodies):
            problems.append(f"{bucket}: old versions under bodies/ never expire")
        if any(r.get("ExpirationInDays") or r.get("ExpirationDate") for r in bodies):
            problems.append(f"{bucket}: a rule expires current bodies, which a failed message still needs")
        pending = [
            r for r in rules if {"Key": "mailer-retention", "Value": "pending"} in (r.get("TagFilters") or [])
        ]
        if not any(r.get("ExpirationInDays") for r in pending):
            problems.append(f"{bucket}: pending uploads never expire")
    return problems


# Settings for the local stack and the tests only: a deployed function never has them.
LOCAL_ONLY_SETTINGS = ("MAILER_ALLOW_PLAINTEXT_SMTP", "MAILER_ALLOW_LOOPBACK_MAILBOXES")


def local_only_setting_problems(translated: Template) -> list[str]:
    problems = []
    for fn, res in resources(translated, "AWS::Lambda::Function").items():
        variables = (props(res).get("Environment") or {}).get("Variables") or {}
        problems += [
            f"{fn}: sets {name}, a setting of the local stack"
            for name in LOCAL_ONLY_SETTINGS
            if name in variables
        ]
    return problems


def _is_account_root(principal: Any) -> bool:
    """Only this account's root (which delegates to IAM), nobody else in the same statement."""
    if not isinstance(principal, dict) or set(principal) != {"AWS"}:
        return False
    aws = as_list(principal["AWS"])
    return bool(aws) and all(
        (referenced_ids(p) == set() and bool(_ACCOUNT_ROOT.match(sub_text(p))))
        or (isinstance(p, dict) and p.get("Ref") == "AWS::AccountId")
        for p in aws
    )


def _policy_documents(translated: Template) -> list[tuple[str, str, Any]]:
    """(logical id, resource type, document) for every policy document of the stack."""
    keys = {
        "AWS::IAM::Role": "Policies",
        "AWS::IAM::Policy": "PolicyDocument",
        "AWS::IAM::ManagedPolicy": "PolicyDocument",
        "AWS::KMS::Key": "KeyPolicy",
        "AWS::S3::BucketPolicy": "PolicyDocument",
        "AWS::SQS::QueuePolicy": "PolicyDocument",
        "AWS::SNS::TopicPolicy": "PolicyDocument",
    }
    found = []
    for kind, key in keys.items():
        for logical, res in resources(translated, kind).items():
            value = props(res).get(key)
            if kind == "AWS::IAM::Role":
                found += [(logical, kind, policy.get("PolicyDocument")) for policy in as_list(value)]
            else:
                found.append((logical, kind, value))
    return found


def wildcard_problems(translated: Template) -> list[str]:
    """No Allow of all actions (`*` or `service:*`) on all resources but the key's admin statement."""
    problems = []
    for logical, kind, document in _policy_documents(translated):
        for statement in statements(document):
            if statement.get("Effect") != "Allow":
                continue
            actions = [str(a) for a in as_list(statement.get("Action"))]
            every_action = "NotAction" in statement or any(a == "*" or a.endswith(":*") for a in actions)
            every_resource = "NotResource" in statement or any(
                is_wildcard(r) for r in as_list(statement.get("Resource"))
            )
            if not (every_action and every_resource):
                continue
            if kind == "AWS::KMS::Key" and _is_account_root(statement.get("Principal")):
                continue
            problems.append(
                f"{logical}: statement {statement.get('Sid', '')!r} allows {actions or 'NotAction'} on *"
            )
    return problems


def managed_policy_problems(translated: Template) -> list[str]:
    problems = []
    for role, res in resources(translated, "AWS::IAM::Role").items():
        for arn in as_list(props(res).get("ManagedPolicyArns")):
            name = sub_text(arn).rsplit("/", 1)[-1]
            if referenced_ids(arn) or name not in SAM_MANAGED_POLICIES:
                problems.append(f"{role}: managed policy {name or arn!r} is not one SAM attaches by itself")
    return problems


def unscoped_statement_problems(translated: Template) -> list[str]:
    """Function roles name their resources; `*` only for actions that cannot be scoped."""
    problems = []
    for fn, role in function_roles(translated).items():
        for statement in role_statements(translated, role):
            if statement.get("Effect") != "Allow":
                continue
            if "NotResource" in statement or any(is_wildcard(r) for r in as_list(statement.get("Resource"))):
                actions = {str(a).lower() for a in as_list(statement.get("Action"))}
                if "NotAction" in statement or not actions <= UNSCOPABLE_ACTIONS:
                    problems.append(f"{fn}: {sorted(actions) or 'NotAction'} on every resource")
    return problems


def can(translated: Template, role: str, actions: tuple[str, ...] | str, target: Any) -> bool:
    stmts = role_statements(translated, role)
    wanted = (actions,) if isinstance(actions, str) else actions
    return any(next(allows(stmts, action, target), None) for action in wanted)


# Who may do what. This is the walking skeleton's matrix: widen it on purpose, never by accident.
MESSAGE_WRITERS = {"ApiFunction", "SendFunction", "TimersFunction", "BounceFunction"}  # bounces: records
MESSAGE_WRITERS |= {"ActionsFunction"}  # the timeline of trigger runs; "send email" triggers compose
MESSAGE_WRITERS |= {"WebhookFunction"}  # Kommo's uninstall hook cancels the account's pending messages
MESSAGE_WRITERS |= {"PipelineFunction"}  # composes what the digital pipeline and Salesbot ask for
# Count opens and clicks on messages: UpdateItem only, never create or delete one.
MESSAGE_COUNTERS = {"TrackFunction"}
SCHEDULE_CREATORS = {"ApiFunction", "TimersFunction"}
SCHEDULE_CREATORS |= {"ActionsFunction"}  # not-opened timers, delayed trigger runs
SCHEDULE_CREATORS |= {"PipelineFunction"}  # a pipeline action delayed more than 15 minutes
NO_SECRETS = {"TrackFunction", "TimersFunction"}  # public pixel/click routes and timers never decrypt


def privilege_problems(source: Template, translated: Template) -> list[str]:
    problems = []
    roles = function_roles(translated)
    for fn, role in roles.items():
        writes = TABLE_WRITES
        if fn in MESSAGE_COUNTERS:
            writes = tuple(a for a in TABLE_WRITES if a != "dynamodb:UpdateItem")
        if fn not in MESSAGE_WRITERS and can(translated, role, writes, names("MessagesTable")):
            problems.append(f"{fn} may write the messages table")
        if fn not in SCHEDULE_CREATORS and can(translated, role, "scheduler:CreateSchedule", lambda _: True):
            problems.append(f"{fn} may create schedules")
        if fn in NO_SECRETS and can(translated, role, ("kms:Decrypt", "kms:Encrypt"), names("SecretsKey")):
            problems.append(f"{fn} may use the secrets key")
        for statement in allows(role_statements(translated, role), "iam:PassRole", lambda _: True):
            scoped = [
                single_ref(r) if referenced_ids(r) else sub_text(r)
                for r in as_list(statement.get("Resource"))
            ]
            condition = statement.get("Condition") or {}
            service = {**condition.get("StringEquals", {}), **condition.get("StringLike", {})}
            if fn not in SCHEDULE_CREATORS or scoped != ["SchedulerRole"]:
                problems.append(f"{fn} may pass {scoped}; only the schedule creators may pass SchedulerRole")
            if service.get("iam:PassedToService") != "scheduler.amazonaws.com":
                problems.append(f"{fn}: iam:PassRole is not limited to scheduler.amazonaws.com")
    return problems + _timers_problems(source, translated)


def _timers_problems(source: Template, translated: Template) -> list[str]:
    """Only EventBridge Scheduler, through SchedulerRole, may invoke the timers function."""
    problems = []
    timers = names_function(source, "TimersFunction")
    for role in resources(translated, "AWS::IAM::Role"):
        if role != "SchedulerRole" and can(translated, role, "lambda:InvokeFunction", timers):
            problems.append(f"{role} may invoke the timers function")
    for logical, res in resources(translated, "AWS::Lambda::Permission").items():
        if timers(props(res).get("FunctionName")):
            problems.append(f"{logical} lets {props(res).get('Principal')} invoke the timers function")
    scheduler = props(translated["Resources"]["SchedulerRole"])
    for statement in statements(scheduler.get("AssumeRolePolicyDocument")):
        services = as_list((statement.get("Principal") or {}).get("Service"))
        if services != ["scheduler.amazonaws.com"] or set(statement.get("Principal") or {}) != {"Service"}:
            problems.append(f"SchedulerRole trusts {statement.get('Principal')}, not only the scheduler")
    for statement in role_statements(translated, "SchedulerRole"):
        actions = [str(a).lower() for a in as_list(statement.get("Action"))]
        targets = as_list(statement.get("Resource"))
        if actions != ["lambda:invokefunction"] or not all(timers(r) and not is_wildcard(r) for r in targets):
            problems.append(
                f"SchedulerRole may do {actions} on {targets}, not only invoke the timers function"
            )
    if not can(translated, "SchedulerRole", "lambda:InvokeFunction", timers):
        problems.append("SchedulerRole cannot invoke the timers function")
    return problems


def all_problems(source: Template, translated: Template) -> list[str]:
    return (
        sqs_mapping_problems(source, translated)
        + queue_problems(translated)
        + table_problems(translated)
        + function_problems(source, translated)
        + local_only_setting_problems(translated)
        + bucket_problems(translated)
        + wildcard_problems(translated)
        + managed_policy_problems(translated)
        + unscoped_statement_problems(translated)
        + privilege_problems(source, translated)
    )
