"""Drain an SQS queue into a function's handler the way Lambda's event source would."""

from __future__ import annotations

import hashlib
from typing import Any

import boto3

from tests.support.api_client import LambdaContext


def receive_batch(queue_url: str, *, max_messages: int = 10) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    return sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=max_messages,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    ).get("Messages", [])


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(m["Body"].encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def deliver(handler: Any, queue_url: str, queue_arn: str) -> dict[str, Any]:
    """One poll: invoke the handler with what the queue gives and delete what succeeded."""
    messages = receive_batch(queue_url)
    if not messages:
        return {"batchItemFailures": [], "delivered": 0}
    result = handler.lambda_handler(sqs_event(messages, queue_arn), LambdaContext()) or {}
    failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
    sqs = boto3.client("sqs")
    for m in messages:
        if m["MessageId"] not in failed:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    return {**result, "delivered": len(messages)}
