"""DevStack: the real template's resources in moto, and every piece wired together."""

from __future__ import annotations

import http.client
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mailer_core.adapters import secrets
from mailer_core.base.clock import FakeClock
from mailer_core.base.config import get_settings

from devstack.resources import load_template
from devstack.stack import DevStack
from tests.support.stack_helpers import client, write_project


def _logical_ids(template: dict[str, Any], kind: str) -> list[str]:
    return [k for k, v in template["Resources"].items() if v["Type"] == kind]


def _get(url: str, path: str) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_the_real_template_comes_up_in_moto_and_the_gateway_answers() -> None:
    template = load_template()
    endpoint_before = os.environ.get("AWS_ENDPOINT_URL")
    # Twice in one process: starting resets moto, so the same names can be created again.
    for _ in range(2):
        with DevStack(
            preload_handlers=False,
            parameters={"KommoClientSecret": "s3cret", "KommoRedirectUri": "https://mailer.example/cb"},
            extra_env={"MAILER_ALLOW_PLAINTEXT_SMTP": "1"},
        ) as stack:
            assert stack.resources is not None
            refs, endpoint = stack.resources.refs, stack.aws_endpoint
            tables = client(endpoint, "dynamodb").list_tables()["TableNames"]
            for logical in _logical_ids(template, "AWS::DynamoDB::Table"):
                assert refs[logical] in tables
            sqs = client(endpoint, "sqs")
            for logical in _logical_ids(template, "AWS::SQS::Queue"):
                attributes = sqs.get_queue_attributes(QueueUrl=refs[logical], AttributeNames=["All"])[
                    "Attributes"
                ]
                expected = template["Resources"][logical]["Properties"].get("VisibilityTimeout", 30)
                assert int(attributes["VisibilityTimeout"]) == expected
            (key,) = _logical_ids(template, "AWS::KMS::Key")
            assert client(endpoint, "kms").describe_key(KeyId=refs[key])["KeyMetadata"]["Enabled"]
            (bucket,) = _logical_ids(template, "AWS::S3::Bucket")
            client(endpoint, "s3").head_bucket(Bucket=refs[bucket])
            (group,) = _logical_ids(template, "AWS::Scheduler::ScheduleGroup")
            assert client(endpoint, "scheduler").get_schedule_group(Name=refs[group])["State"] == "ACTIVE"

            # the functions' environment is in os.environ and the settings read it
            assert os.environ["AWS_ENDPOINT_URL"] == endpoint
            assert os.environ["MAILER_ALLOW_PLAINTEXT_SMTP"] == "1"
            assert get_settings().send_queue_url == refs["SendQueue"]
            assert get_settings().timers_function_arn == stack.functions.get("TimersFunction").arn  # type: ignore[union-attr]

            # the client secret is seeded into Secrets Manager and read from there, never
            # given as a plain variable; a secret whose parameter is empty is not created
            assert "KOMMO_CLIENT_SECRET" not in os.environ
            secret_arn = get_settings().kommo_client_secret_id
            assert secret_arn == refs["KommoClientSecretValue"]
            stored = client(endpoint, "secretsmanager").get_secret_value(SecretId=secret_arn)
            assert stored["SecretString"] == "s3cret"
            secrets.forget()
            assert secrets.kommo_client_secret() == "s3cret"
            assert get_settings().tracking_secret_id == "" and not secrets.tracking_configured()

            # one poller per SQS event, with the template's concurrency
            assert stack.pollers is not None
            assert sorted((p.name, p.concurrency) for p in stack.pollers.pollers) == [
                ("ActionsFunction.Actions", 2),
                ("BounceFunction.Mailboxes", 5),
                ("CampaignsFunction.Campaigns", 2),
                ("KommoAuthFunction.Installs", 2),
                ("PipelineFunction.Pipeline", 2),
                ("SendFunction.Bulk", 10),
                ("SendFunction.Priority", 5),
            ]
            assert _get(stack.api_url, "/no/such/route") == (404, b'{"message":"Not Found"}')
            assert stack.drain(10)
    assert os.environ.get("AWS_ENDPOINT_URL") == endpoint_before


TEMPLATE = """
Globals:
  Function:
    Timeout: 10
    Environment:
      Variables:
        WORK_QUEUE_URL: !Ref WorkQueue
        TIMERS_ARN: !Sub "arn:aws:lambda:${AWS::Region}:${AWS::AccountId}:function:${AWS::StackName}-timers"
        GROUP: !Ref Group
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
  WorkQueue:
    Type: AWS::SQS::Queue
    Properties: {VisibilityTimeout: 30}
  Group:
    Type: AWS::Scheduler::ScheduleGroup
    Properties: {Name: !Sub "${AWS::StackName}-group"}
  FrontFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ../functions/front
      Handler: handler.lambda_handler
      Events:
        Jobs: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: POST, Path: /jobs}}
  WorkerFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ../functions/worker
      Handler: handler.lambda_handler
      Events:
        Work:
          Type: SQS
          Properties: {Queue: !GetAtt WorkQueue.Arn, FunctionResponseTypes: [ReportBatchItemFailures]}
  TimersFunction:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: !Sub "${AWS::StackName}-timers"
      CodeUri: ../functions/timers
      Handler: handler.lambda_handler
"""

FRONT = """
import os, boto3

def lambda_handler(event, context):
    sqs = boto3.client("sqs")  # follows AWS_ENDPOINT_URL, as the real handlers do
    sqs.send_message(QueueUrl=os.environ["WORK_QUEUE_URL"], MessageBody=event["body"])
    return {"statusCode": 202, "body": "queued"}
"""

WORKER = """
import os, boto3

def lambda_handler(event, context):
    scheduler = boto3.client("scheduler")
    for record in event["Records"]:
        scheduler.create_schedule(
            Name=record["messageId"],
            GroupName=os.environ["GROUP"],
            ScheduleExpression="at(2026-11-24T10:00:00)",
            FlexibleTimeWindow={"Mode": "OFF"},
            Target={"Arn": os.environ["TIMERS_ARN"], "RoleArn": "arn:aws:iam::123456789012:role/r",
                    "Input": record["body"]},
            ActionAfterCompletion="DELETE",
        )
    return {"batchItemFailures": []}
"""

TIMERS = """
EVENTS = []

def lambda_handler(event, context):
    EVENTS.append(event)
"""


def test_a_request_flows_through_queue_and_schedule_to_the_timer(tmp_path: Path) -> None:
    # GIVEN a small stack: an HTTP route queues a job, a worker schedules it, a timer gets it
    path = write_project(tmp_path, TEMPLATE, {"front": FRONT, "worker": WORKER, "timers": TIMERS})
    clock = FakeClock(current=datetime(2026, 11, 24, 9, 0, tzinfo=UTC))
    with DevStack(template_path=path, stack_name="flow", clock=clock) as stack:
        assert stack.functions is not None
        timers = stack.functions.get("TimersFunction").handler().__globals__
        # WHEN a job is posted and the stack drains
        host, port = stack.api_url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request(
            "POST", "/jobs", body=json.dumps({"job": 1}), headers={"Content-Type": "application/json"}
        )
        assert conn.getresponse().status == 202
        conn.close()
        assert stack.drain(10)
        # THEN the job waits in a schedule for 10:00
        scheduler = client(stack.aws_endpoint, "scheduler")
        assert len(scheduler.list_schedules(GroupName="flow-group")["Schedules"]) == 1
        assert timers["EVENTS"] == []
        # WHEN its time comes, THEN draining fires it at the timer, which deletes it
        clock.advance(3600)
        assert stack.drain(10)
        assert timers["EVENTS"] == [{"job": 1}]
        assert scheduler.list_schedules(GroupName="flow-group")["Schedules"] == []
