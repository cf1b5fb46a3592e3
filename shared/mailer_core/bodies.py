"""S3: the only module that stores and reads large email bodies.

DynamoDB items stop at 400 KB, so an HTML body above `INLINE_LIMIT` bytes is kept in the
bucket and the message keeps its key.
"""

from __future__ import annotations

from mailer_core import aws
from mailer_core.settings import get_settings

INLINE_LIMIT = 100 * 1024


def body_key(account_id: int, message_id: str) -> str:
    return f"bodies/{account_id}/{message_id}.html"


def put_html(account_id: int, message_id: str, html: str) -> str:
    key = body_key(account_id, message_id)
    aws.client("s3").put_object(
        Bucket=get_settings().bucket,
        Key=key,
        Body=html.encode("utf-8"),
        ContentType="text/html; charset=utf-8",
    )
    return key


def get_html(key: str) -> str:
    obj = aws.client("s3").get_object(Bucket=get_settings().bucket, Key=key)
    return bytes(obj["Body"].read()).decode("utf-8")
