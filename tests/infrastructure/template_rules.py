"""Rules infra/template.yaml must keep; each returns a list of problems (empty when kept).

Each rule reads the translated CloudFormation (and the SAM source where only it says what
was meant), so the rules see what AWS would deploy, including what SAM adds by itself.
"""

from __future__ import annotations

import json
import re
from typing import Any

from mailer_core.base import metrics
from mailer_core.kommo.tokens import token_context
from mailer_core.mailboxes.connection import password_context

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


# ---------------------------------------------------------------- least privilege

# The item actions a function may hold on a table; a Scan or a batch write only where named.
TABLE_ACTIONS = {"dynamodb:getitem", "dynamodb:query", "dynamodb:batchgetitem"}
TABLE_ACTIONS |= {"dynamodb:putitem", "dynamodb:updateitem", "dynamodb:deleteitem"}
SCANS = {("BounceFunction", "MailboxesTable")}  # the schedule finds the green mailboxes due
BATCH_WRITES = {
    ("ApiFunction", "TargetListMembersTable"),  # a CSV import, a list's deletion
    ("CampaignsFunction", "TargetListMembersTable"),  # a deleted list's members past the first 5,000
    ("CampaignsFunction", "MessagesTable"),  # a campaign part's emails (campaigns.expansion)
}
# Bucket prefixes functions may touch (mailer_core.adapters.s3): bodies, uploads, web pages.
BUCKET_PREFIXES = ("bodies/", "uploads/", "pages/")


def _kms_purposes() -> set[str]:
    """The `purpose` of every encryption context the code passes to adapters/kms."""
    return {
        password_context(1, "m")["purpose"],
        password_context(1, "m", "imap_password")["purpose"],
        token_context(1, "access")["purpose"],
        token_context(1, "refresh")["purpose"],
    }


def kms_purposes(statement: dict[str, Any]) -> set[str] | None:
    """The purposes a KMS statement is limited to; None when it carries no such condition."""
    equals = (statement.get("Condition") or {}).get("StringEquals") or {}
    values = equals.get("kms:EncryptionContext:purpose")
    return None if values is None else {str(v) for v in as_list(values)}


def _table_actions(statement: dict[str, Any]) -> set[str]:
    return {
        str(a).lower() for a in as_list(statement.get("Action")) if str(a).lower().startswith("dynamodb:")
    }


# One check per kind of resource a function role names.
def least_privilege_problems(translated: Template) -> list[str]:  # noqa: C901
    problems = []
    tables = set(resources(translated, "AWS::DynamoDB::Table"))
    purposes = _kms_purposes()
    for fn, role in function_roles(translated).items():
        for statement in role_statements(translated, role):
            if statement.get("Effect") != "Allow":
                continue
            targets = as_list(statement.get("Resource"))
            named = set().union(*(referenced_ids(r) for r in targets)) if targets else set()
            actions = _table_actions(statement)
            if "NotAction" in statement and named & tables:
                problems.append(f"{fn}: NotAction on {sorted(named & tables)}")
            for table in sorted(named & tables):
                extra = actions - TABLE_ACTIONS
                extra -= {"dynamodb:scan"} if (fn, table) in SCANS else set()
                extra -= {"dynamodb:batchwriteitem"} if (fn, table) in BATCH_WRITES else set()
                problems += [f"{fn} may {a} on {table}" for a in sorted(extra)]
            for target in targets:
                text = sub_text(target)
                if actions and named & tables and "*" in text:
                    problems.append(f"{fn}: {text!r} names every index or table")
            s3_actions = {
                str(a).lower() for a in as_list(statement.get("Action")) if str(a).lower().startswith("s3:")
            }
            for target in targets:
                if not s3_actions or "BodiesBucket" not in referenced_ids(target):
                    continue
                text = sub_text(target)
                if not any(f"}}/{prefix}" in text and text.endswith("*") for prefix in BUCKET_PREFIXES):
                    problems.append(f"{fn}: {sorted(s3_actions)} on the whole bucket ({text or target})")
            if "SecretsKey" in named:
                kms_actions = sorted(
                    a
                    for a in (str(x).lower() for x in as_list(statement.get("Action")))
                    if a.startswith("kms:")
                )
                limited = kms_purposes(statement)
                if kms_actions and limited is None:
                    problems.append(
                        f"{fn}: {kms_actions} on SecretsKey without an encryption-context condition"
                    )
                elif kms_actions and not limited <= purposes:
                    problems.append(
                        f"{fn}: {kms_actions} for purposes the code never uses {sorted(limited - purposes)}"
                    )
    return problems


# ---------------------------------------------------------------- secrets

# The stack's secrets (Secrets Manager) and the only functions that may read each one.
KOMMO_CLIENT_SECRET_READERS = {"ApiFunction", "WebhookFunction", "KommoAuthFunction"}
KOMMO_CLIENT_SECRET_READERS |= {"SendFunction", "ActionsFunction", "PipelineFunction", "CampaignsFunction"}
KOMMO_CLIENT_SECRET_READERS |= {"PagesFunction"}  # token refreshes for a page's CRM data
SECRET_READERS = {
    # the widget token, OAuth exchanges and refreshes, the uninstall hook, Salesbot tokens
    "KommoClientSecretValue": KOMMO_CLIENT_SECRET_READERS,
    "TrackingSecretValue": {"SendFunction", "TrackFunction", "PagesFunction"},  # sign at send; check
}
# Plain settings of a secret's value: tests and scripts only, never a deployed function.
PLAIN_SECRET_SETTINGS = ("KOMMO_CLIENT_SECRET", "MAILER_TRACKING_SECRET")


def _secret_values(translated: Template) -> set[str]:
    return set(resources(translated, "AWS::SecretsManager::Secret"))


def secret_problems(translated: Template) -> list[str]:
    """Secret values reach functions only through Secrets Manager, read by the listed functions."""
    problems = []
    no_echo = {name for name, p in (translated.get("Parameters") or {}).items() if p.get("NoEcho")}
    for logical, res in translated.get("Resources", {}).items():
        uses = referenced_ids(res.get("Properties")) & no_echo
        if uses and res.get("Type") != "AWS::SecretsManager::Secret":
            problems.append(f"{logical}: uses the NoEcho parameter(s) {sorted(uses)} outside Secrets Manager")
    for fn, res in resources(translated, "AWS::Lambda::Function").items():
        variables = (props(res).get("Environment") or {}).get("Variables") or {}
        problems += [
            f"{fn}: sets {name}, a secret's plain value"
            for name in PLAIN_SECRET_SETTINGS
            if name in variables
        ]
    found = _secret_values(translated)
    for secret in sorted(set(SECRET_READERS) - found):
        problems.append(f"{secret}: the secret is missing from the template")
    for secret in sorted(found - set(SECRET_READERS)):
        problems.append(f"{secret}: a secret with no list of readers in template_rules.SECRET_READERS")
    for fn, role in function_roles(translated).items():
        for secret in sorted(found):
            may = can(translated, role, "secretsmanager:GetSecretValue", names(secret))
            if may and fn not in SECRET_READERS.get(secret, set()):
                problems.append(f"{fn} may read {secret}")
            if not may and fn in SECRET_READERS.get(secret, set()):
                problems.append(f"{fn} needs {secret} and may not read it")
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
MESSAGE_WRITERS |= {"CampaignsFunction"}  # composes a campaign's emails; holds or cancels them
# Count opens and clicks on messages: UpdateItem only, never create or delete one.
MESSAGE_COUNTERS = {"TrackFunction"}
MESSAGE_COUNTERS |= {"PagesFunction"}  # a public page's tracked links go after its email's (docs/pages.md)
SCHEDULE_CREATORS = {"ApiFunction", "TimersFunction"}
SCHEDULE_CREATORS |= {"ActionsFunction"}  # not-opened timers, delayed trigger runs
SCHEDULE_CREATORS |= {"PipelineFunction"}  # a pipeline action delayed more than 15 minutes
SCHEDULE_CREATORS |= {"CampaignsFunction"}  # a campaign's start, its package paced beyond 15 minutes
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


# ---------------------------------------------------------------- operations


def _retention(translated: Template, value: Any) -> Any:
    """A log group's RetentionInDays, a parameter's default read through its Ref."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return (translated.get("Parameters") or {}).get(value["Ref"], {}).get("Default")
    return value


def log_retention_problems(translated: Template) -> list[str]:
    """Every function logs to a group of its own that this stack keeps for a limited time.

    Without one, Lambda creates /aws/lambda/<name> itself, and it keeps every line forever."""
    problems = []
    groups = resources(translated, "AWS::Logs::LogGroup")
    owners: dict[str, list[str]] = {}
    for fn, res in resources(translated, "AWS::Lambda::Function").items():
        group = (props(res).get("LoggingConfig") or {}).get("LogGroup")
        ids = referenced_ids(group) & set(groups)
        if len(ids) != 1:
            problems.append(f"{fn}: LoggingConfig.LogGroup names no log group of this stack")
            continue
        owners.setdefault(ids.pop(), []).append(fn)
    for group, res in groups.items():
        days = _retention(translated, props(res).get("RetentionInDays"))
        if not str(days).isdigit() or int(days) < 1:
            problems.append(f"{group}: no RetentionInDays (its lines would be kept forever)")
        if len(owners.get(group, [])) > 1:
            problems.append(f"{group}: shared by {sorted(owners[group])}; each function needs its own")
    return problems


# Which metric an alarm watches: (namespace, metric name, {dimension: logical id or value}).
Watched = tuple[str, str, dict[str, str]]
KOMMO_BLOCKS = (metrics.NAMESPACE, "kommo_blocks")


def _dimensions(dimensions: Any) -> dict[str, str]:
    return {
        str(d.get("Name")): (
            single_ref(d["Value"]) if referenced_ids(d.get("Value")) else str(d.get("Value"))
        )
        for d in as_list(dimensions)
        if isinstance(d, dict)
    }


def watched(alarm: dict[str, Any]) -> list[Watched]:
    """The metrics an alarm reads: its own, or those of its metric math."""
    p = props(alarm)
    if p.get("MetricName"):
        return [(str(p.get("Namespace")), str(p["MetricName"]), _dimensions(p.get("Dimensions")))]
    found = []
    for query in as_list(p.get("Metrics")):
        metric = ((query or {}).get("MetricStat") or {}).get("Metric") or {}
        if metric.get("MetricName"):
            found.append(
                (
                    str(metric.get("Namespace")),
                    str(metric["MetricName"]),
                    _dimensions(metric.get("Dimensions")),
                )
            )
    return found


def _watches(alarms: dict[str, Any], namespace: str, metric: str, **dimensions: str) -> bool:
    return any(
        (ns, name) == (namespace, metric) and all(dims.get(k) == v for k, v in dimensions.items())
        for alarm in alarms.values()
        for ns, name, dims in watched(alarm)
    )


def _dead_letter_queues(translated: Template) -> set[str]:
    return {
        single_ref(props(q)["RedrivePolicy"]["deadLetterTargetArn"])
        for q in resources(translated, "AWS::SQS::Queue").values()
        if (props(q).get("RedrivePolicy") or {}).get("deadLetterTargetArn")
    }


def alarm_problems(translated: Template) -> list[str]:
    """Every dead-letter queue, the send queues' oldest job, each function's errors and
    throttles, the send failure rate and Kommo's blocks are watched, and every alarm tells the
    alarm topic."""
    problems = []
    alarms = resources(translated, "AWS::CloudWatch::Alarm")
    topics = set(resources(translated, "AWS::SNS::Topic"))
    for logical, alarm in alarms.items():
        if not referenced_ids(props(alarm).get("AlarmActions")) & topics:
            problems.append(f"{logical}: tells no topic of this stack when it fires")
    for queue in sorted(_dead_letter_queues(translated)):
        if not _watches(alarms, "AWS/SQS", "ApproximateNumberOfMessagesVisible", QueueName=queue):
            problems.append(f"{queue}: no alarm when it holds a message")
    for fn, queue in sorted(_sqs_mappings(translated).values()):
        if fn == "SendFunction" and not _watches(
            alarms, "AWS/SQS", "ApproximateAgeOfOldestMessage", QueueName=queue
        ):
            problems.append(f"{queue}: no alarm on the age of its oldest message")
    for fn in sorted(resources(translated, "AWS::Lambda::Function")):
        for metric in ("Errors", "Throttles"):
            if not _watches(alarms, "AWS/Lambda", metric, FunctionName=fn):
                problems.append(f"{fn}: no alarm on {metric}")
    return problems + _business_alarm_problems(translated, alarms)


def _business_alarm_problems(translated: Template, alarms: dict[str, Any]) -> list[str]:
    """The failure rate reads base.metrics' totals; Kommo's blocks are counted in every log."""
    problems = []
    rate = [
        alarm
        for alarm in alarms.values()
        if {(ns, name) for ns, name, dims in watched(alarm) if dims == {"service": metrics.SERVICE}}
        >= {(metrics.NAMESPACE, "sent"), (metrics.NAMESPACE, "failed")}
    ]
    if not rate:
        problems.append("no alarm on the send failure rate (Mailer sent and failed, service totals)")
    filters = resources(translated, "AWS::Logs::MetricFilter")
    counted_in = {
        single_ref(props(f).get("LogGroupName"))
        for f in filters.values()
        for t in as_list(props(f).get("MetricTransformations"))
        if (t.get("MetricNamespace"), t.get("MetricName")) == KOMMO_BLOCKS
    }
    for group in sorted(set(resources(translated, "AWS::Logs::LogGroup")) - counted_in):
        problems.append(f"{group}: no metric filter counts Kommo's blocks in it")
    if counted_in and not _watches(alarms, *KOMMO_BLOCKS):
        problems.append("kommo_blocks: counted, but no alarm reads it")
    return problems


def _dashboard_metrics(body: Any) -> set[str]:
    """`namespace/name` of every metric a dashboard body draws."""
    found = set()
    for widget in body.get("widgets", []):
        for row in (widget.get("properties") or {}).get("metrics", []):
            names = [str(part) for part in row if isinstance(part, str)]
            if len(names) >= 2:
                found.add(f"{names[0]}/{names[1]}")
    return found


def dashboard_problems(translated: Template) -> list[str]:
    """One dashboard shows every alarm, queue and function, and the emails' metrics."""
    dashboards = resources(translated, "AWS::CloudWatch::Dashboard")
    if len(dashboards) != 1:
        return [f"{len(dashboards)} dashboards, expected one"]
    [(logical, dashboard)] = dashboards.items()
    expr = props(dashboard).get("DashboardBody")
    body = json.loads(sub_text(expr))  # a body that is not JSON fails here, loudly
    shown = referenced_ids(expr)
    wanted = set()
    for kind in ("AWS::CloudWatch::Alarm", "AWS::SQS::Queue", "AWS::Lambda::Function"):
        wanted |= set(resources(translated, kind))
    problems = [f"{logical}: does not show {missing}" for missing in sorted(wanted - shown)]
    drawn = _dashboard_metrics(body)
    for metric in [*metrics.EVENTS, KOMMO_BLOCKS[1]]:
        if f"{metrics.NAMESPACE}/{metric}" not in drawn:
            problems.append(f"{logical}: does not show {metrics.NAMESPACE}/{metric}")
    return problems


# The saved Logs Insights queries the runbook names, and the log field each one filters on.
SAVED_QUERIES = {"Why did this email fail": "message_id", "What did this account do": "account_id"}


def query_problems(translated: Template) -> list[str]:
    """The runbook's saved queries exist, each filters on its field, and every saved query reads
    every function's log group (a query that misses one answers "nothing happened")."""
    problems = []
    groups = set(resources(translated, "AWS::Logs::LogGroup"))
    by_name = {}
    for logical, res in resources(translated, "AWS::Logs::QueryDefinition").items():
        p = props(res)
        by_name[sub_text(p.get("Name")).rsplit("/", 1)[-1]] = str(p.get("QueryString") or "")
        for missing in sorted(groups - referenced_ids(p.get("LogGroupNames"))):
            problems.append(f"{logical}: does not read {missing}")
    for name, field in SAVED_QUERIES.items():
        query = by_name.get(name)
        if query is None:
            problems.append(f"no saved query {name!r}")
        elif not re.search(rf"\|\s*filter {field} = ", query):
            problems.append(f"the saved query {name!r} does not filter on {field}")
    return problems


def all_problems(source: Template, translated: Template) -> list[str]:
    return (
        sqs_mapping_problems(source, translated)
        + queue_problems(translated)
        + table_problems(translated)
        + function_problems(source, translated)
        + local_only_setting_problems(translated)
        + secret_problems(translated)
        + least_privilege_problems(translated)
        + bucket_problems(translated)
        + wildcard_problems(translated)
        + managed_policy_problems(translated)
        + unscoped_statement_problems(translated)
        + privilege_problems(source, translated)
        + log_retention_problems(translated)
        + alarm_problems(translated)
        + dashboard_problems(translated)
        + query_problems(translated)
    )
