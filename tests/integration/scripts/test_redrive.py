"""scripts/redrive.py against moto: the stack's dead letters go back to the queues they came from.

moto has no StartMessageMoveTask, so the moves here are the script's own (receive, send, delete);
a stubbed SQS shows that the script asks SQS to move them where SQS can.
"""

from __future__ import annotations

import argparse
import json

import boto3
import pytest
from botocore.stub import Stubber

from devstack.resources import StackResources, load_template
from scripts import redrive

STACK = "mailer-test"


@pytest.fixture
def stack(aws_stack: StackResources) -> StackResources:
    """The template's queues in moto, and a CloudFormation stack with the template's outputs."""
    outputs = {
        key: {"Value": aws_stack.resolve(spec["Value"])}
        for key, spec in load_template()["Outputs"].items()
        if key.endswith("DeadLetterQueueUrl")
    }
    body = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}, "Outputs": outputs}
    boto3.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(body))
    return aws_stack


def dead_letter(stack: StackResources, queue: str, body: str) -> None:
    """A job its consumer failed on until SQS gave it up to the queue's dead-letter queue."""
    sqs = boto3.client("sqs")
    url = stack.refs[queue]
    sqs.send_message(QueueUrl=url, MessageBody=body)
    for _ in range(10):
        if not sqs.receive_message(QueueUrl=url, VisibilityTimeout=0).get("Messages"):
            return
    raise AssertionError(f"{queue} kept {body}")


def bodies(stack: StackResources, queue: str) -> list[str]:
    sqs = boto3.client("sqs")
    found = []
    while got := sqs.receive_message(QueueUrl=stack.refs[queue], MaxNumberOfMessages=10).get("Messages"):
        for m in got:
            found.append(m["Body"])
            sqs.delete_message(QueueUrl=stack.refs[queue], ReceiptHandle=m["ReceiptHandle"])
    return sorted(found)


def run(*argv: str) -> int:
    args = argparse.Namespace(queue=argv[0], stack=STACK, region=None, dry_run="--dry-run" in argv)
    return redrive.run(args, boto3.client("sqs"), boto3.client("cloudformation"), wait_seconds=0)


def test_every_dead_letter_queue_of_the_template_is_found_in_the_stack_outputs(stack: StackResources) -> None:
    template_dlqs = {
        r["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for r in load_template()["Resources"].values()
        if r["Type"] == "AWS::SQS::Queue" and "RedrivePolicy" in r.get("Properties", {})
    }
    outputs = redrive.stack_outputs(boto3.client("cloudformation"), STACK)

    assert redrive.dead_letter_queues(outputs) == {name: stack.refs[name] for name in template_dlqs}


def test_a_dead_letter_queue_goes_back_to_its_source_queue(
    stack: StackResources, capsys: pytest.CaptureFixture[str]
) -> None:
    for n in range(12):
        dead_letter(stack, "ActionsQueue", f'{{"run": {n}}}')
    assert bodies(stack, "ActionsQueue") == []

    assert run("ActionsDeadLetterQueue") == 0

    assert bodies(stack, "ActionsQueue") == sorted(f'{{"run": {n}}}' for n in range(12))
    assert bodies(stack, "ActionsDeadLetterQueue") == []
    assert "ActionsDeadLetterQueue: moved 12 message(s) back to" in capsys.readouterr().out


def test_all_redrives_every_dead_letter_queue_but_the_bounce_polls(
    stack: StackResources, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_letter(stack, "SendQueue", "single")
    dead_letter(stack, "BulkSendQueue", "mailing")
    dead_letter(stack, "PipelineQueue", "dp")
    dead_letter(stack, "BouncePollQueue", "poll")

    assert run("all") == 0

    assert sorted(bodies(stack, "SendQueue") + bodies(stack, "BulkSendQueue")) == ["mailing", "single"]
    assert bodies(stack, "PipelineQueue") == ["dp"]
    assert bodies(stack, "BouncePollDeadLetterQueue") == ["poll"]  # a poll job is worth one run
    out = capsys.readouterr().out
    assert "BouncePollDeadLetterQueue: not redriven" in out
    assert "KommoAuthDeadLetterQueue: empty, nothing to move" in out


def test_a_dry_run_says_where_they_would_go_and_moves_nothing(
    stack: StackResources, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_letter(stack, "PipelineQueue", "dp")

    assert run("PipelineDeadLetterQueue", "--dry-run") == 0

    assert bodies(stack, "PipelineDeadLetterQueue") == ["dp"]
    source = stack.attrs[("PipelineQueue", "QueueName")]
    assert capsys.readouterr().out == f"PipelineDeadLetterQueue: 1 message(s) would go back to {source}\n"


def test_an_unknown_queue_is_refused_with_the_names_known(
    stack: StackResources, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("SendQueue") == 2

    assert "SendQueue: not a dead-letter queue of mailer-test; known: ActionsDeadLetterQueue, " in (
        capsys.readouterr().err
    )


def test_where_sqs_moves_messages_itself_the_script_asks_it_to() -> None:
    sqs = boto3.client("sqs")
    dlq = redrive.DeadLetterQueue(
        "SendDeadLetterQueue",
        "https://sqs.example/1/dlq",
        "arn:aws:sqs:us-east-1:1:dlq",
        {"arn:aws:sqs:us-east-1:1:send": "https://sqs.example/1/send"},
    )
    with Stubber(sqs) as stub:
        stub.add_response(
            "get_queue_attributes",
            {"Attributes": {"ApproximateNumberOfMessages": "3"}},
            {"QueueUrl": dlq.url, "AttributeNames": ["ApproximateNumberOfMessages"]},
        )
        stub.add_response("start_message_move_task", {"TaskHandle": "task-1"}, {"SourceArn": dlq.arn})

        line = redrive.redrive(sqs, dlq)

        stub.assert_no_pending_responses()
    assert line.startswith("SendDeadLetterQueue: SQS moves 3 message(s) back to send (task task-1;")


def test_a_dead_letter_goes_to_the_source_sqs_names_else_to_the_queue_that_sends_here() -> None:
    dlq = redrive.DeadLetterQueue("D", "u", "a", {"arn:send": "url:send", "arn:bulk": "url:bulk"})

    assert redrive.source_for({"Attributes": {"DeadLetterQueueSourceArn": "arn:bulk"}}, dlq) == "url:bulk"
    assert redrive.source_for({}, dlq) == "url:send"
    with pytest.raises(LookupError):
        redrive.source_for({}, redrive.DeadLetterQueue("D", "u", "a", {}))
