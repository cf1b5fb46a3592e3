"""The SQS pollers: Lambda's event shape, partial batch failures, redrive, concurrency."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.pollers import Pollers
from devstack.template import sqs_event_sources
from tests.support.stack_helpers import MiniStack, client, mini_stack

TEMPLATE = """
Resources:
  WorkQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 1
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt DeadQueue.Arn
        maxReceiveCount: {max_receive}
  DeadQueue:
    Type: AWS::SQS::Queue
  WorkerFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ../functions/worker
      Handler: handler.lambda_handler
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt WorkQueue.Arn
            BatchSize: {batch_size}
{extra}
"""

# Records every batch; fails records whose body says so; "raise" as a body fails the batch.
WORKER = """
import threading, time

CALLS = []
LOCK = threading.Lock()
RUNNING = [0]
PEAK = [0]

def lambda_handler(event, context):
    records = event["Records"]
    with LOCK:
        CALLS.append(records)
        RUNNING[0] += 1
        PEAK[0] = max(PEAK[0], RUNNING[0])
    try:
        bodies = [r["body"] for r in records]
        if any(b.startswith("slow") for b in bodies):
            time.sleep(0.2)
        if any(b == "always-raise" for b in bodies):
            raise RuntimeError("this batch fails")
        first = [r["body"] for r in records if r["attributes"]["ApproximateReceiveCount"] == "1"]
        if "raise-once" in first:
            raise RuntimeError("this batch fails the first time")
        failures = [
            {"itemIdentifier": r["messageId"]}
            for r in records
            if r["body"].startswith("fail-once") and r["attributes"]["ApproximateReceiveCount"] == "1"
        ]
        return {"batchItemFailures": failures}
    finally:
        with LOCK:
            RUNNING[0] -= 1
"""

REPORT = "            FunctionResponseTypes: [ReportBatchItemFailures]"


def make(tmp_path: Path, *, batch_size: int = 10, max_receive: int = 5, extra: str = "") -> MiniStack:
    template = TEMPLATE.format(batch_size=batch_size, max_receive=max_receive, extra=extra)
    return mini_stack(tmp_path, template, {"worker": WORKER})


@pytest.fixture
def run_pollers(local_aws: str) -> Iterator[Any]:
    started: list[Pollers] = []

    def run(stack: MiniStack) -> Pollers:
        pollers = Pollers(
            sqs_event_sources(stack.template, stack.resources), stack.functions, client(local_aws, "sqs")
        )
        pollers.start()
        started.append(pollers)
        return pollers

    yield run
    for pollers in started:
        pollers.stop()


def send(endpoint: str, queue_url: str, *bodies: str, **kwargs: Any) -> list[str]:
    sqs = client(endpoint, "sqs")
    return [sqs.send_message(QueueUrl=queue_url, MessageBody=b, **kwargs)["MessageId"] for b in bodies]


def bodies_of(calls: list[list[dict[str, Any]]]) -> list[list[str]]:
    return [sorted(r["body"] for r in records) for records in calls]


def queue_bodies(endpoint: str, queue_url: str) -> list[str]:
    sqs = client(endpoint, "sqs")
    found = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    return sorted(m["Body"] for m in found)


def test_records_have_the_shape_lambda_gives_them(tmp_path: Path, local_aws: str, run_pollers: Any) -> None:
    # GIVEN a message with a string and a binary attribute
    stack = make(tmp_path, extra=REPORT)
    queue_url, queue_arn = stack.resources.refs["WorkQueue"], stack.resources.attrs[("WorkQueue", "Arn")]
    (message_id,) = send(
        local_aws,
        queue_url,
        '{"message_id": "m1"}',
        MessageAttributes={
            "kind": {"DataType": "String", "StringValue": "priority"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        },
    )
    # WHEN the poller hands it to the function
    pollers = run_pollers(stack)
    assert pollers.drain(10)
    # THEN the function got one SQS event record shaped as Lambda shapes it
    ((record,),) = stack.module("WorkerFunction").CALLS
    assert record["messageId"] == message_id
    assert record["body"] == '{"message_id": "m1"}'
    assert record["md5OfBody"] == hashlib.md5(b'{"message_id": "m1"}').hexdigest()
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == queue_arn
    assert record["awsRegion"] == "us-east-1"
    assert record["receiptHandle"]
    assert {
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SenderId",
        "ApproximateFirstReceiveTimestamp",
    } <= set(record["attributes"])
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["messageAttributes"] == {
        "kind": {
            "stringValue": "priority",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        },
        "blob": {"binaryValue": "AAE=", "stringListValues": [], "binaryListValues": [], "dataType": "Binary"},
    }
    # AND the message was deleted
    assert queue_bodies(local_aws, queue_url) == []


def test_only_records_reported_as_failed_come_back(tmp_path: Path, local_aws: str, run_pollers: Any) -> None:
    # GIVEN three messages on the queue, one of which the handler fails the first time
    stack = make(tmp_path, extra=REPORT)
    send(local_aws, stack.resources.refs["WorkQueue"], "ok-1", "fail-once", "ok-2")
    # WHEN the pollers run until the queue is empty
    pollers = run_pollers(stack)
    assert pollers.drain(15)
    # THEN the first batch held all three and only the failed record was delivered again
    calls = stack.module("WorkerFunction").CALLS
    assert bodies_of(calls) == [["fail-once", "ok-1", "ok-2"], ["fail-once"]]
    assert calls[1][0]["attributes"]["ApproximateReceiveCount"] == "2"
    assert queue_bodies(local_aws, stack.resources.refs["DeadQueue"]) == []


@pytest.mark.parametrize("report", [True, False], ids=["report-batch-item-failures", "plain"])
def test_an_exception_leaves_the_whole_batch(
    tmp_path: Path, local_aws: str, run_pollers: Any, report: bool
) -> None:
    stack = make(tmp_path, extra=REPORT if report else "")
    send(local_aws, stack.resources.refs["WorkQueue"], "raise-once", "innocent")
    pollers = run_pollers(stack)
    assert pollers.drain(15)
    assert bodies_of(stack.module("WorkerFunction").CALLS) == [["innocent", "raise-once"]] * 2


def test_without_report_batch_item_failures_a_returned_failure_list_is_ignored(
    tmp_path: Path, local_aws: str, run_pollers: Any
) -> None:
    stack = make(tmp_path)
    send(local_aws, stack.resources.refs["WorkQueue"], "fail-once", "ok-1")
    pollers = run_pollers(stack)
    assert pollers.drain(10)
    assert bodies_of(stack.module("WorkerFunction").CALLS) == [["fail-once", "ok-1"]]


def test_a_message_goes_to_the_dead_letter_queue_after_max_receive_count(
    tmp_path: Path, local_aws: str, run_pollers: Any
) -> None:
    # GIVEN a queue that dead-letters after two receives and a message the handler always fails
    stack = make(tmp_path, max_receive=2, extra=REPORT)
    send(local_aws, stack.resources.refs["WorkQueue"], "always-raise")
    # WHEN the pollers run until the source queue is empty
    pollers = run_pollers(stack)
    assert pollers.drain(15)
    # THEN the handler saw it exactly twice and it now waits in the dead-letter queue
    calls = stack.module("WorkerFunction").CALLS
    assert [r[0]["attributes"]["ApproximateReceiveCount"] for r in calls] == ["1", "2"]
    assert queue_bodies(local_aws, stack.resources.refs["DeadQueue"]) == ["always-raise"]


@pytest.mark.parametrize(("scaling", "expected"), [("ScalingConfig: {MaximumConcurrency: 2}", 2), ("", 5)])
def test_concurrent_invocations_never_exceed_maximum_concurrency(
    tmp_path: Path, local_aws: str, run_pollers: Any, scaling: str, expected: int
) -> None:
    # GIVEN many one-message batches that each take a while
    extra = f"            {scaling}" if scaling else ""
    stack = make(tmp_path, batch_size=1, extra=extra)
    send(local_aws, stack.resources.refs["WorkQueue"], *[f"slow-{i}" for i in range(3 * expected)])
    # WHEN the pollers work through them
    pollers = run_pollers(stack)
    assert pollers.drain(15)
    # THEN they ran in parallel up to the limit (5 without ScalingConfig) and never beyond
    module = stack.module("WorkerFunction")
    assert len(module.CALLS) == 3 * expected
    assert module.PEAK[0] == expected


def test_drain_waits_for_messages_sent_while_draining(
    tmp_path: Path, local_aws: str, run_pollers: Any
) -> None:
    stack = make(tmp_path, extra=REPORT)
    pollers = run_pollers(stack)
    assert pollers.drain(5)
    send(local_aws, stack.resources.refs["WorkQueue"], "slow-late")
    assert pollers.drain(10)
    assert bodies_of(stack.module("WorkerFunction").CALLS) == [["slow-late"]]
