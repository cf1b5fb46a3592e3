"""Send dead letters back to the queue they came from: one dead-letter queue of the stack, or all.

    python scripts/redrive.py SendDeadLetterQueue [--stack mailer] [--region eu-west-1] [--dry-run]
    python scripts/redrive.py all --stack mailer-prod

The queues are found in the stack's outputs (`<logical id>Url`, e.g. `SendDeadLetterQueueUrl`,
read with CloudFormation's DescribeStacks). The move is SQS's own DLQ redrive
(StartMessageMoveTask): every message goes back to the queue it came from (SendDeadLetterQueue
holds both send queues' failures) while SQS works in the background; `aws sqs
list-message-move-tasks --source-arn <arn>` follows it. Where SQS does not offer that API
(moto, the local stack) the script moves the messages itself: receive, send to the source
queue, delete, until the queue gives nothing more. The source is the one SQS names on the
message (DeadLetterQueueSourceArn), else the queue whose redrive policy points here (the first
SQS lists when several do: either send queue sends a send job). `--dry-run` says how many
messages each queue holds and where they would go, and moves nothing.

Redriving is safe for Mailer's queues: a job only names state kept in DynamoDB and each consumer
does its work once (docs/operations.md, "Dead letters"). Not BouncePollDeadLetterQueue: a poll
job is worth one run, and a redriven one could poll a mailbox the schedule has leased since.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError

OUTPUT_SUFFIX = "DeadLetterQueueUrl"
ALL = "all"
NOT_REDRIVEN = {
    "BouncePollDeadLetterQueue": (
        "a poll job is worth one run: the next schedule queues its mailbox again; "
        "read the jobs, then purge the queue (docs/operations.md)"
    ),
}
# What SQS answers where it has no message move tasks (moto raises NotImplementedError).
NO_MOVE_TASKS = {"UnsupportedOperation", "InvalidAction", "NotImplemented", "UnknownOperationException"}


@dataclass(frozen=True)
class DeadLetterQueue:
    name: str  # the logical id in the template
    url: str
    arn: str
    sources: dict[str, str]  # ARN -> URL of each queue whose failures come here


def stack_outputs(cfn: Any, stack: str) -> dict[str, str]:
    [description] = cfn.describe_stacks(StackName=stack)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in description.get("Outputs", [])}


def dead_letter_queues(outputs: dict[str, str]) -> dict[str, str]:
    """Logical id -> URL of each dead-letter queue the stack outputs."""
    return {
        key.removesuffix("Url"): url for key, url in sorted(outputs.items()) if key.endswith(OUTPUT_SUFFIX)
    }


def _arn(sqs: Any, url: str) -> str:
    return str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])


def describe(sqs: Any, name: str, url: str) -> DeadLetterQueue:
    sources = sqs.list_dead_letter_source_queues(QueueUrl=url).get("queueUrls", [])
    return DeadLetterQueue(name, url, _arn(sqs, url), {_arn(sqs, s): s for s in sources})


def waiting(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def _queue_name(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def start_move_task(sqs: Any, dlq: DeadLetterQueue) -> str | None:
    """SQS's redrive of every message to its own source; its task handle, or None where SQS
    has no message move tasks."""
    try:
        return str(sqs.start_message_move_task(SourceArn=dlq.arn)["TaskHandle"])
    except NotImplementedError:
        return None
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in NO_MOVE_TASKS:
            return None
        raise


def source_for(message: dict[str, Any], dlq: DeadLetterQueue) -> str:
    """The URL of the queue a dead letter goes back to."""
    named = (message.get("Attributes") or {}).get("DeadLetterQueueSourceArn")
    if named in dlq.sources:
        return dlq.sources[named]
    if not dlq.sources:
        raise LookupError(f"{dlq.name}: no queue sends its failures here")
    return next(iter(dlq.sources.values()))


def move_by_hand(sqs: Any, dlq: DeadLetterQueue, wait_seconds: int = 1) -> int:
    """Receive, send back, delete, until the queue gives nothing; how many were moved."""
    moved = 0
    while got := sqs.receive_message(
        QueueUrl=dlq.url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=wait_seconds,
        MessageSystemAttributeNames=["DeadLetterQueueSourceArn"],
        MessageAttributeNames=["All"],
    ).get("Messages"):
        for message in got:
            resend: dict[str, Any] = {"QueueUrl": source_for(message, dlq), "MessageBody": message["Body"]}
            if message.get("MessageAttributes"):
                resend["MessageAttributes"] = message["MessageAttributes"]
            sqs.send_message(**resend)
            sqs.delete_message(QueueUrl=dlq.url, ReceiptHandle=message["ReceiptHandle"])
            moved += 1
    return moved


def redrive(sqs: Any, dlq: DeadLetterQueue, *, dry_run: bool = False, wait_seconds: int = 1) -> str:
    """Move one dead-letter queue's messages back; what happened, in a line."""
    if dlq.name in NOT_REDRIVEN:
        return f"{dlq.name}: not redriven: {NOT_REDRIVEN[dlq.name]}"
    count = waiting(sqs, dlq.url)
    targets = ", ".join(_queue_name(url) for url in dlq.sources.values()) or "no source queue"
    if dry_run:
        return f"{dlq.name}: {count} message(s) would go back to {targets}"
    if count == 0:
        return f"{dlq.name}: empty, nothing to move"
    handle = start_move_task(sqs, dlq)
    if handle is not None:
        return (
            f"{dlq.name}: SQS moves {count} message(s) back to {targets} (task {handle}; "
            f"aws sqs list-message-move-tasks --source-arn {dlq.arn})"
        )
    moved = move_by_hand(sqs, dlq, wait_seconds)
    return f"{dlq.name}: moved {moved} message(s) back to {targets} (by hand: SQS has no move tasks here)"


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "queue", help=f"a dead-letter queue's logical id (e.g. SendDeadLetterQueue), or {ALL}"
    )
    parser.add_argument("--stack", default="mailer", help="the stack's name (default: mailer)")
    parser.add_argument("--region", default=None, help="the stack's region (default: boto3's)")
    parser.add_argument("--dry-run", action="store_true", help="say what would move, move nothing")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, sqs: Any, cfn: Any, wait_seconds: int = 1) -> int:
    known = dead_letter_queues(stack_outputs(cfn, args.stack))
    if args.queue != ALL and args.queue not in known:
        print(
            f"{args.queue}: not a dead-letter queue of {args.stack}; known: {', '.join(known)}",
            file=sys.stderr,
        )
        return 2
    for name, url in known.items():
        if args.queue in (ALL, name):
            print(redrive(sqs, describe(sqs, name, url), dry_run=args.dry_run, wait_seconds=wait_seconds))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    session = boto3.session.Session(region_name=args.region)
    return run(args, session.client("sqs"), session.client("cloudformation"))


if __name__ == "__main__":
    sys.exit(main())
