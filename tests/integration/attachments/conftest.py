"""Fixtures for attachments: API callers, a real SMTP server, and uploads put into S3."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from devstack.resources import StackResources
from tests.conftest import TEST_AUDIENCE, TEST_SECRET
from tests.support.api_client import ApiClient
from tests.support.smtp_servers import Credentials, SmtpTestServer, smtp_server

ACCOUNT = 31000001
OTHER_ACCOUNT = 42000002
LOGIN = "anna@example.com"
PASSWORD = "s3cret-app-password"


@pytest.fixture
def user(aws_stack: Any) -> ApiClient:
    return ApiClient(secret=TEST_SECRET, audience=TEST_AUDIENCE, account_id=ACCOUNT, user_id=501)


@pytest.fixture
def stranger(aws_stack: Any) -> ApiClient:
    """An administrator of another Kommo account."""
    return ApiClient(
        secret=TEST_SECRET, audience=TEST_AUDIENCE, account_id=OTHER_ACCOUNT, user_id=900, is_admin=True
    )


@pytest.fixture
def smtp() -> Iterator[SmtpTestServer]:
    with smtp_server(authenticator=Credentials(LOGIN, PASSWORD), auth_require_tls=False) as server:
        yield server


def mailbox_body(server: SmtpTestServer) -> dict[str, Any]:
    return {
        "sender_name": "Анна Смирнова",
        "sender_email": LOGIN,
        "smtp_host": server.host,
        "smtp_port": server.port,
        "smtp_security": "none",
        "smtp_password": PASSWORD,
        "is_default": True,
    }


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
