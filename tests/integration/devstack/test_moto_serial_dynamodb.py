"""The local stack's DynamoDB applies concurrent writes one at a time, as AWS does.

moto's server answers each request on a thread of its own and applies an UpdateItem without
a lock; the local stack serialises DynamoDB so that its tests prove what AWS would do.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


def table(local_aws: str) -> tuple[object, str]:
    client = boto3.client("dynamodb", config=Config(max_pool_connections=50))
    name = f"serial-{uuid.uuid4().hex[:8]}"
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return client, name


def test_fifty_concurrent_increments_count_fifty(local_aws: str) -> None:
    client, name = table(local_aws)

    def increment(_: int) -> None:
        client.update_item(  # type: ignore[attr-defined]
            TableName=name,
            Key={"k": {"S": "counter"}},
            UpdateExpression="SET n = if_not_exists(n, :zero) + :one",
            ExpressionAttributeValues={":zero": {"N": "0"}, ":one": {"N": "1"}},
        )

    for _ in range(4):
        with ThreadPoolExecutor(max_workers=50) as pool:
            list(pool.map(increment, range(50)))
    item = client.get_item(TableName=name, Key={"k": {"S": "counter"}}, ConsistentRead=True)  # type: ignore[attr-defined]
    assert item["Item"]["n"]["N"] == "200"


def test_two_callers_never_both_win_one_conditional_write(local_aws: str) -> None:
    client, name = table(local_aws)

    def claim(key: str) -> bool:
        try:
            client.put_item(  # type: ignore[attr-defined]
                TableName=name,
                Item={"k": {"S": key}},
                ConditionExpression="attribute_not_exists(k)",
            )
        except ClientError as error:
            assert error.response["Error"]["Code"] == "ConditionalCheckFailedException"
            return False
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        winners = [sum(pool.map(claim, [f"claim-{n}"] * 8)) for n in range(100)]
    assert winners == [1] * 100
