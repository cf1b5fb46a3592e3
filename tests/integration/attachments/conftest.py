"""Fixtures for attachments: API callers, a real SMTP server, and uploads put into S3."""

from __future__ import annotations

from typing import Any

import boto3

from devstack.resources import StackResources

# The same callers, SMTP server and mailbox as the core's integration tests.
from tests.integration.core.conftest import (  # noqa: F401 - fixtures are found by name
    ACCOUNT,
    LOGIN,
    OTHER_ACCOUNT,
    PASSWORD,
    mailbox_body,
    smtp,
    stranger,
    user,
)
from tests.support.api_client import ApiClient


def ask_upload(client: ApiClient, filename: str, size: int, **extra: Any) -> dict[str, Any]:
    reply = client.post("/v1/uploads", {"filename": filename, "size": size, **extra})
    assert reply.status == 201, reply.body
    return dict(reply.json())


def upload(
    client: ApiClient, stack: StackResources, filename: str, data: bytes, content_type: str | None = None
) -> str:
    """Ask for an upload and put the file where the presigned POST would (in-process moto)."""
    extra = {"content_type": content_type} if content_type else {}
    created = ask_upload(client, filename, len(data), **extra)
    fields = created["upload"]["fields"]
    boto3.client("s3").put_object(
        Bucket=stack.refs["BodiesBucket"], Key=fields["key"], Body=data, ContentType=fields["Content-Type"]
    )
    return str(created["id"])
