"""Shared fixtures: an in-process moto account with the template's resources."""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.loaders import JSONFileLoader
from mailer_core.base.config import reset_settings
from mailer_core.store import models
from moto import mock_aws

from devstack.resources import StackResources, create_stack, function_environment

TEST_SECRET = "test-client-secret-0123456789abcdef"
TEST_REDIRECT_URI = "https://mailer.test.example/oauth/callback"
TEST_AUDIENCE = "https://mailer.test.example"

# No test may reach real AWS: fake credentials and a region for every client.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
    POWERTOOLS_METRICS_NAMESPACE="MailerTests",
    POWERTOOLS_SERVICE_NAME="mailer",
)
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)

_real_json_load = JSONFileLoader.load_file


@functools.cache
def _botocore_data(file_path: str) -> Any:
    return _real_json_load(JSONFileLoader(), file_path)


def _shared_botocore_data(self: JSONFileLoader, file_path: str) -> Any:
    """botocore reads its JSON service models again for every new session, and the tests make
    fresh sessions all the time (moto per test, clients reset per stack): most of a test's
    set-up went into parsing the same files. The data is only read, never changed, so one
    parsed copy serves every session of the test process."""
    return _botocore_data(file_path)


JSONFileLoader.load_file = _shared_botocore_data  # type: ignore[method-assign]

_real_connect = socket.socket.connect


def _loopback_only(sock: socket.socket, address: object) -> None:
    """Tests talk to servers on this machine only; anything else is a bug in the test."""
    host = address[0] if isinstance(address, tuple) else None
    if host is not None and not (str(host).startswith("127.") or host in ("::1", "localhost")):
        raise ConnectionRefusedError(f"tests may not connect to {host}: only 127.0.0.1 is allowed")
    _real_connect(sock, address)  # type: ignore[arg-type]


socket.socket.connect = _loopback_only  # type: ignore[method-assign]


def stack_for_functions(monkeypatch: pytest.MonkeyPatch) -> Iterator[StackResources]:
    """Create the template's resources wherever boto3 points now (moto in-process or a moto
    server) and give the functions' environment to this test; forget it all afterwards."""
    stack = create_stack(
        boto3.session.Session(),
        parameters={"KommoClientSecret": TEST_SECRET, "KommoRedirectUri": TEST_REDIRECT_URI},
    )
    for key, value in function_environment(stack).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MAILER_ALLOW_PLAINTEXT_SMTP", "1")
    reset_settings()
    models.reset_connections()
    try:
        yield stack
    finally:
        reset_settings()
        models.reset_connections()


@pytest.fixture
def aws_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[StackResources]:
    """GIVEN the template's tables, queues, key, bucket and schedule group in moto."""
    with mock_aws():
        yield from stack_for_functions(monkeypatch)
