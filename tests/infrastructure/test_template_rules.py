"""infra/template.yaml, translated offline by the SAM translator, keeps the stack's rules.

The rules live in template_rules.py; the second half of this file breaks the template on
purpose to show each rule notices.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from tests.infrastructure import template_rules as rules
from tests.infrastructure.sam_offline import (
    Template,
    function_roles,
    load_source,
    referenced_ids,
    resources,
    translate,
)


@pytest.fixture(scope="module")
def source() -> Template:
    return load_source()


@pytest.fixture(scope="module")
def translated(source: Template) -> Template:
    return translate(source)


def test_the_template_translates_offline_into_one_lambda_per_function(
    source: Template, translated: Template
) -> None:
    sam_functions = resources(source, "AWS::Serverless::Function")

    assert sam_functions, "the template declares no function"
    assert set(resources(translated, "AWS::Lambda::Function")) == set(sam_functions)
    assert not resources(translated, "AWS::Serverless::Function")


def test_every_sqs_event_is_a_mapping_reporting_partial_failures_with_bounded_concurrency(
    source: Template, translated: Template
) -> None:
    assert rules._sqs_events(source), "no SQS event: the send worker lost its queue"
    assert rules.sqs_mapping_problems(source, translated) == []


def test_every_consumed_queue_has_a_dead_letter_queue_and_six_times_the_timeout(translated: Template) -> None:
    assert rules.queue_problems(translated) == []


def test_tables_are_on_demand_encrypted_and_recoverable_or_expiring(translated: Template) -> None:
    assert resources(translated, "AWS::DynamoDB::Table")
    assert rules.table_problems(translated) == []


def test_functions_run_python_3_13_with_the_core_layer(source: Template, translated: Template) -> None:
    assert rules.function_problems(source, translated) == []


def test_no_statement_allows_every_action_on_every_resource(translated: Template) -> None:
    assert rules.wildcard_problems(translated) == []


def test_roles_carry_only_the_managed_policies_sam_attaches(translated: Template) -> None:
    assert rules.managed_policy_problems(translated) == []


def test_function_roles_name_the_resources_they_use(translated: Template) -> None:
    assert rules.unscoped_statement_problems(translated) == []


def test_each_function_holds_only_its_own_privileges(source: Template, translated: Template) -> None:
    assert rules.privilege_problems(source, translated) == []


def test_every_function_logs_to_a_group_of_its_own_kept_for_a_limited_time(translated: Template) -> None:
    assert len(resources(translated, "AWS::Logs::LogGroup")) == len(
        resources(translated, "AWS::Lambda::Function")
    )
    assert rules.log_retention_problems(translated) == []


def test_dead_letters_queue_age_errors_throttles_failures_and_kommo_blocks_raise_alarms_on_the_topic(
    translated: Template,
) -> None:
    assert resources(translated, "AWS::CloudWatch::Alarm")
    assert rules.alarm_problems(translated) == []


def test_the_alarm_checks_read_the_metrics_the_alarms_watch(translated: Template) -> None:
    """Positive controls: a broken reading of the alarms would pass the rule above unread."""
    alarms = resources(translated, "AWS::CloudWatch::Alarm")

    assert rules.watched(alarms["SendDeadLetterQueueAlarm"]) == [
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": "SendDeadLetterQueue"})
    ]
    assert rules.watched(alarms["SendFailureRateAlarm"]) == [
        ("Mailer", "sent", {"service": "mailer"}),
        ("Mailer", "failed", {"service": "mailer"}),
    ]


def test_the_dashboard_shows_every_alarm_queue_and_function_and_the_emails(translated: Template) -> None:
    assert rules.dashboard_problems(translated) == []


def test_saved_queries_find_an_emails_story_and_an_accounts_in_every_functions_log(
    translated: Template,
) -> None:
    assert rules.query_problems(translated) == []


def test_the_stack_outputs_the_alarm_topic_and_the_dashboard(translated: Template) -> None:
    outputs = translated["Outputs"]

    assert referenced_ids(outputs["AlarmTopicArn"]["Value"]) == {"AlarmTopic"}
    assert referenced_ids(outputs["DashboardUrl"]["Value"]) == {"Dashboard"}


def test_the_bucket_expires_old_body_versions_and_pending_uploads_only(translated: Template) -> None:
    assert resources(translated, "AWS::S3::Bucket")
    assert rules.bucket_problems(translated) == []


def test_no_function_gets_a_setting_of_the_local_stack(translated: Template) -> None:
    """Plain SMTP and mailbox servers on loopback are for the local stack and the tests only."""
    assert rules.local_only_setting_problems(translated) == []


def test_secrets_come_from_secrets_manager_read_only_by_the_functions_that_use_them(
    translated: Template,
) -> None:
    assert rules.secret_problems(translated) == []


def test_the_secret_checks_see_the_grants_that_exist(translated: Template) -> None:
    """Positive controls: the readers can read, the others cannot, the values are not plain."""
    roles = function_roles(translated)
    read = "secretsmanager:GetSecretValue"

    assert rules.can(translated, roles["ApiFunction"], read, rules.names("KommoClientSecretValue"))
    assert rules.can(translated, roles["TrackFunction"], read, rules.names("TrackingSecretValue"))
    assert not rules.can(translated, roles["TrackFunction"], read, rules.names("KommoClientSecretValue"))
    assert not rules.can(translated, roles["TimersFunction"], read, rules.names("TrackingSecretValue"))
    globals_env = translated["Resources"]["TimersFunction"]["Properties"]["Environment"]["Variables"]
    assert referenced_ids(globals_env["MAILER_KOMMO_CLIENT_SECRET_ID"]) == {"KommoClientSecretValue"}


def test_each_function_holds_only_the_item_actions_prefixes_and_key_purposes_it_uses(
    translated: Template,
) -> None:
    assert rules.least_privilege_problems(translated) == []


def test_the_least_privilege_checks_see_the_grants_that_exist(translated: Template) -> None:
    """Positive controls: the one Scan, the one batch write, the bucket prefixes, the key's purposes."""
    roles = function_roles(translated)
    mailboxes, members = rules.names("MailboxesTable"), rules.names("TargetListMembersTable")

    assert rules.can(translated, roles["BounceFunction"], "dynamodb:Scan", mailboxes)
    assert not rules.can(translated, roles["ApiFunction"], "dynamodb:Scan", mailboxes)
    assert rules.can(translated, roles["ApiFunction"], "dynamodb:BatchWriteItem", members)
    assert rules.can(translated, roles["SendFunction"], "s3:GetObjectVersion", rules.names("BodiesBucket"))
    send_puts = rules.allows(
        rules.role_statements(translated, roles["SendFunction"]), "s3:PutObject", rules.names("BodiesBucket")
    )
    assert [rules.sub_text(r) for st in send_puts for r in rules.as_list(st["Resource"])] == [
        "${BodiesBucket.Arn}/bodies/*/sent/*"  # the body as sent; nothing else
    ]

    def purposes(fn: str, action: str) -> set[str]:
        found: set[str] = set()
        for statement in rules.allows(
            rules.role_statements(translated, roles[fn]), action, rules.names("SecretsKey")
        ):
            found |= rules.kms_purposes(statement) or {"(any)"}
        return found

    assert purposes("SendFunction", "kms:Decrypt") == rules._kms_purposes()
    assert purposes("BounceFunction", "kms:Decrypt") == {"smtp_password", "imap_password"}
    assert purposes("KommoAuthFunction", "kms:Encrypt") == {"kommo_access_token", "kommo_refresh_token"}
    assert purposes("TrackFunction", "kms:Decrypt") == set()


def test_the_privilege_checks_see_the_grants_that_exist(translated: Template) -> None:
    """Positive controls: without them a broken analysis would pass every rule above."""
    roles = function_roles(translated)

    assert rules.can(translated, roles["SendFunction"], rules.TABLE_WRITES, rules.names("MessagesTable"))
    assert rules.can(
        translated, roles["ApiFunction"], "scheduler:CreateSchedule", rules.names("ScheduleGroup")
    )
    assert rules.can(translated, roles["ApiFunction"], "kms:Encrypt", rules.names("SecretsKey"))
    # The track routes count opens and clicks (UpdateItem) but never create or delete a message.
    assert rules.can(translated, roles["TrackFunction"], "dynamodb:UpdateItem", rules.names("MessagesTable"))
    assert not rules.can(
        translated,
        roles["TrackFunction"],
        tuple(a for a in rules.TABLE_WRITES if a != "dynamodb:UpdateItem"),
        rules.names("MessagesTable"),
    )
    assert not rules.can(
        translated, roles["WebhookFunction"], "dynamodb:PutItem", rules.names("MessagesTable")
    )


# ---------------------------------------------------------------- each rule notices a break

Mutation = Callable[[dict[str, Any]], None]


def _set(logical: str, key: str, value: Any) -> Mutation:
    return lambda tpl: tpl["Resources"][logical]["Properties"].__setitem__(key, value)


def _drop(logical: str, key: str) -> Mutation:
    return lambda tpl: tpl["Resources"][logical]["Properties"].pop(key)


def _add_policy(logical: str, policy: Any) -> Mutation:
    return lambda tpl: tpl["Resources"][logical]["Properties"]["Policies"].append(policy)


def _send_event(event: str, key: str, value: Any) -> Mutation:
    def mutate(tpl: dict[str, Any]) -> None:
        tpl["Resources"]["SendFunction"]["Properties"]["Events"][event]["Properties"][key] = value

    return mutate


def _add_resource(logical: str, resource: dict[str, Any]) -> Mutation:
    return lambda tpl: tpl["Resources"].__setitem__(logical, resource)


def _drop_resource(logical: str) -> Mutation:
    return lambda tpl: tpl["Resources"].pop(logical)


def _new_dead_letter_queue(source: str, logical: str) -> Mutation:
    def mutate(tpl: dict[str, Any]) -> None:
        tpl["Resources"][logical] = {
            "Type": "AWS::SQS::Queue",
            "Properties": {"MessageRetentionPeriod": 1209600},
        }
        redrive = tpl["Resources"][source]["Properties"]["RedrivePolicy"]
        redrive["deadLetterTargetArn"] = {"Fn::GetAtt": [logical, "Arn"]}

    return mutate


def _edit_dashboard(old: str, new: str) -> Mutation:
    def mutate(tpl: dict[str, Any]) -> None:
        body = tpl["Resources"]["Dashboard"]["Properties"]["DashboardBody"]
        assert old in body["Fn::Sub"]
        body["Fn::Sub"] = body["Fn::Sub"].replace(old, new)

    return mutate


def _body_rule(change: Callable[[list[dict[str, Any]]], None]) -> Mutation:
    return lambda tpl: change(
        tpl["Resources"]["BodiesBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    )


def _global_env(name: str, value: Any) -> Mutation:
    return lambda tpl: tpl["Globals"]["Function"]["Environment"]["Variables"].__setitem__(name, value)


def _drop_statement(fn: str, sid: str) -> Mutation:
    """Remove the statement `sid` from the function's inline policies."""

    def mutate(tpl: dict[str, Any]) -> None:
        policies = tpl["Resources"][fn]["Properties"]["Policies"]
        for policy in policies:
            if isinstance(policy, dict) and "Statement" in policy:
                policy["Statement"] = [s for s in policy["Statement"] if s.get("Sid") != sid]
        policies[:] = [p for p in policies if not (isinstance(p, dict) and p.get("Statement") == [])]

    return mutate


def _add_event(fn: str, event: str, spec: dict[str, Any]) -> Mutation:
    return lambda tpl: tpl["Resources"][fn]["Properties"].setdefault("Events", {}).__setitem__(event, spec)


_EVERYTHING = {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
_SCHEDULE = {
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "scheduler:CreateSchedule",
            "Resource": {"Fn::Sub": "arn:x:${ScheduleGroup}/*"},
        }
    ]
}
_OPEN_KEY_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}],
}

BREAKS: list[tuple[str, Mutation, str]] = [
    ("visibility below 6x timeout", _set("SendQueue", "VisibilityTimeout", 300), "visibility timeout 300"),
    ("no redrive", _drop("BulkSendQueue", "RedrivePolicy"), "BulkSendQueue: no RedrivePolicy"),
    ("short-lived DLQ", _set("SendDeadLetterQueue", "MessageRetentionPeriod", 60), "shorter"),
    ("concurrency 1", _send_event("Bulk", "ScalingConfig", {"MaximumConcurrency": 1}), "not within 2..1000"),
    ("no partial failures", _send_event("Priority", "FunctionResponseTypes", []), "ReportBatchItemFailures"),
    ("orphan queue", _add_resource("LostQueue", {"Type": "AWS::SQS::Queue", "Properties": {}}), "LostQueue"),
    (
        "table without TTL or PITR",
        _drop("RateLimitsTable", "TimeToLiveSpecification"),
        "RateLimitsTable: neither",
    ),
    ("table without SSE", _drop("MessagesTable", "SSESpecification"), "MessagesTable: SSESpecification"),
    ("provisioned table", _set("AccountsTable", "BillingMode", "PROVISIONED"), "AccountsTable: BillingMode"),
    ("old runtime", _set("TrackFunction", "Runtime", "python3.12"), "TrackFunction: runtime 'python3.12'"),
    (
        "old bodies kept",
        _body_rule(lambda rules: rules.remove(next(r for r in rules if r["Id"] == "OldBodyVersions"))),
        "BodiesBucket: old versions under bodies/ never expire",
    ),
    (
        "current bodies expired",
        _body_rule(
            lambda rules: rules.append({"Status": "Enabled", "Prefix": "bodies/", "ExpirationInDays": 30})
        ),
        "BodiesBucket: a rule expires current bodies",
    ),
    (
        "loopback mailboxes deployed",
        _global_env("MAILER_ALLOW_LOOPBACK_MAILBOXES", "1"),
        "ApiFunction: sets MAILER_ALLOW_LOOPBACK_MAILBOXES",
    ),
    (
        "track writes messages",
        _add_policy("TrackFunction", {"DynamoDBCrudPolicy": {"TableName": {"Ref": "MessagesTable"}}}),
        "TrackFunction may write the messages table",
    ),
    ("webhook schedules", _add_policy("WebhookFunction", _SCHEDULE), "WebhookFunction may create schedules"),
    (
        "track decrypts",
        _add_policy("TrackFunction", {"KMSDecryptPolicy": {"KeyId": {"Ref": "SecretsKey"}}}),
        "TrackFunction may use the secrets key",
    ),
    ("admin statement", _add_policy("WebhookFunction", _EVERYTHING), "allows ['*'] on *"),
    ("admin managed policy", _add_policy("WebhookFunction", "AdministratorAccess"), "AdministratorAccess"),
    ("open key policy", _set("SecretsKey", "KeyPolicy", _OPEN_KEY_POLICY), "SecretsKey: statement"),
    (
        "public timers",
        _add_event(
            "TimersFunction",
            "Web",
            {
                "Type": "HttpApi",
                "Properties": {"ApiId": {"Ref": "MailerHttpApi"}, "Method": "GET", "Path": "/x"},
            },
        ),
        "invoke the timers function",
    ),
    (
        "api invokes timers",
        _add_policy("ApiFunction", {"LambdaInvokePolicy": {"FunctionName": {"Ref": "TimersFunction"}}}),
        "ApiFunctionRole may invoke the timers function",
    ),
    # ---- secrets
    (
        "the client secret as a plain variable",
        _global_env("KOMMO_CLIENT_SECRET", {"Ref": "KommoClientSecret"}),
        "uses the NoEcho parameter(s) ['KommoClientSecret'] outside Secrets Manager",
    ),
    (
        "the tracking secret's plain setting deployed",
        _global_env("MAILER_TRACKING_SECRET", "x" * 32),
        "TrackFunction: sets MAILER_TRACKING_SECRET, a secret's plain value",
    ),
    (
        "timers read the client secret",
        _add_policy(
            "TimersFunction",
            {"AWSSecretsManagerGetSecretValuePolicy": {"SecretArn": {"Ref": "KommoClientSecretValue"}}},
        ),
        "TimersFunction may read KommoClientSecretValue",
    ),
    (
        "track reads every secret",
        _add_policy(
            "TrackFunction",
            {"Statement": [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]},
        ),
        "TrackFunction may read KommoClientSecretValue",
    ),
    (
        "a reader loses its secret",
        _drop_statement("KommoAuthFunction", "ReadKommoClientSecret"),
        "KommoAuthFunction needs KommoClientSecretValue and may not read it",
    ),
    (
        "a secret nobody listed",
        _add_resource(
            "LostSecret", {"Type": "AWS::SecretsManager::Secret", "Properties": {"SecretString": "x"}}
        ),
        "LostSecret: a secret with no list of readers",
    ),
    # ---- least privilege
    (
        "a read policy template (Scan and every index)",
        _add_policy("TrackFunction", {"DynamoDBReadPolicy": {"TableName": {"Ref": "MessagesTable"}}}),
        "TrackFunction may dynamodb:scan on MessagesTable",
    ),
    (
        "a CRUD policy template",
        _add_policy("ActionsFunction", {"DynamoDBCrudPolicy": {"TableName": {"Ref": "AutomationTable"}}}),
        "ActionsFunction may dynamodb:batchwriteitem on AutomationTable",
    ),
    (
        "a query on every index",
        _add_policy(
            "CampaignsFunction",
            {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "dynamodb:Query",
                        "Resource": {"Fn::Sub": "${MessagesTable.Arn}/index/*"},
                    }
                ]
            },
        ),
        "names every index or table",
    ),
    (
        "a whole-bucket read",
        _add_policy("SendFunction", {"S3ReadPolicy": {"BucketName": {"Ref": "BodiesBucket"}}}),
        "SendFunction: ['s3:getbucketlocation', 's3:getlifecycleconfiguration'",
    ),
    (
        "a decrypt without an encryption context",
        _add_policy("BounceFunction", {"KMSDecryptPolicy": {"KeyId": {"Ref": "SecretsKey"}}}),
        "BounceFunction: ['kms:decrypt'] on SecretsKey without an encryption-context condition",
    ),
    (
        "a purpose the code never passes",
        _add_policy(
            "TimersFunction",
            {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "kms:Decrypt",
                        "Resource": {"Fn::GetAtt": ["SecretsKey", "Arn"]},
                        "Condition": {"StringEquals": {"kms:EncryptionContext:purpose": ["anything"]}},
                    }
                ]
            },
        ),
        "TimersFunction: ['kms:decrypt'] for purposes the code never uses ['anything']",
    ),
    # ---- operations
    (
        "function without its log group",
        _drop("TrackFunction", "LoggingConfig"),
        "TrackFunction: LoggingConfig.LogGroup names no log group",
    ),
    ("logs kept forever", _drop("SendLogGroup", "RetentionInDays"), "SendLogGroup: no RetentionInDays"),
    (
        "two functions in one log group",
        _set("TimersFunction", "LoggingConfig", {"LogGroup": {"Ref": "ActionsLogGroup"}}),
        "ActionsLogGroup: shared by ['ActionsFunction', 'TimersFunction']",
    ),
    (
        "dead letters unwatched",
        _drop_resource("PipelineDeadLetterQueueAlarm"),
        "PipelineDeadLetterQueue: no alarm when it holds a message",
    ),
    (
        "a new dead-letter queue unwatched",
        _new_dead_letter_queue("KommoAuthQueue", "LostDeadLetters"),
        "LostDeadLetters: no alarm when it holds a message",
    ),
    (
        "an alarm that tells nobody",
        _drop("SendQueueAgeAlarm", "AlarmActions"),
        "SendQueueAgeAlarm: tells no topic",
    ),
    (
        "bulk mailings may wait forever",
        _drop_resource("BulkSendQueueAgeAlarm"),
        "BulkSendQueue: no alarm on the age of its oldest message",
    ),
    ("errors unwatched", _drop_resource("TimersErrorsAlarm"), "TimersFunction: no alarm on Errors"),
    ("throttles unwatched", _drop_resource("TrackThrottlesAlarm"), "TrackFunction: no alarm on Throttles"),
    ("failure rate unwatched", _drop_resource("SendFailureRateAlarm"), "no alarm on the send failure rate"),
    (
        "Kommo's blocks in one log uncounted",
        _drop_resource("SendKommoBlocks"),
        "SendLogGroup: no metric filter counts Kommo's blocks",
    ),
    ("Kommo's blocks unwatched", _drop_resource("KommoBlocksAlarm"), "kommo_blocks: counted, but no alarm"),
    (
        "a queue off the dashboard",
        _edit_dashboard('"${PipelineQueue.QueueName}"', '"lost"'),
        "Dashboard: does not show PipelineQueue",
    ),
    (
        "an alarm off the dashboard",
        _edit_dashboard('"${KommoBlocksAlarm.Arn}"', '"lost"'),
        "Dashboard: does not show KommoBlocksAlarm",
    ),
    (
        "opens off the dashboard",
        _edit_dashboard('["Mailer", "opened"', '["Mailer", "clicked"'),
        "Dashboard: does not show Mailer/opened",
    ),
    (
        "a query that misses a log",
        lambda tpl: tpl["Resources"]["EmailFailureQuery"]["Properties"]["LogGroupNames"].pop(),
        "EmailFailureQuery: does not read ActionsLogGroup",
    ),
    (
        "no query for an account",
        _drop_resource("AccountActivityQuery"),
        "no saved query 'What did this account do'",
    ),
    (
        "an email's query on the wrong field",
        _set(
            "EmailFailureQuery",
            "QueryString",
            'fields message | filter id = "MESSAGE_ID"',
        ),
        "the saved query 'Why did this email fail' does not filter on message_id",
    ),
]


@pytest.mark.parametrize(("mutate", "expected"), [pytest.param(m, e, id=i) for i, m, e in BREAKS])
def test_each_rule_notices_when_the_template_breaks_it(
    source: Template, mutate: Mutation, expected: str
) -> None:
    broken = copy.deepcopy(source)
    mutate(broken)

    problems = rules.all_problems(broken, translate(broken))

    assert any(expected in p for p in problems), problems


def test_the_layer_is_checked_against_the_shared_folder(source: Template) -> None:
    broken = copy.deepcopy(source)
    broken["Resources"]["CoreLayer"]["Properties"]["ContentUri"] = "../devstack"

    assert "no layer is built from shared/" in rules.function_problems(broken, translate(broken))
