"""The template's resources for a test, wherever boto3 points (moto in-process or a moto server)."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from mailer_core.base.config import reset_settings
from mailer_core.store import models

from devstack.resources import StackResources, create_stack, function_environment
from tests.support.constants import TEST_REDIRECT_URI, TEST_SECRET


def stack_for_functions(monkeypatch: pytest.MonkeyPatch) -> Iterator[StackResources]:
    """Create the template's resources wherever boto3 points now and give the functions'
    environment to this test; forget it all afterwards."""
    stack = create_stack(
        boto3.session.Session(),
        parameters={"KommoClientSecret": TEST_SECRET, "KommoRedirectUri": TEST_REDIRECT_URI},
    )
    for key, value in function_environment(stack).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MAILER_ALLOW_PLAINTEXT_SMTP", "1")
    monkeypatch.setenv("MAILER_ALLOW_LOOPBACK_MAILBOXES", "1")  # the test servers are on 127.0.0.1
    reset_settings()
    models.reset_connections()
    try:
        yield stack
    finally:
        reset_settings()
        models.reset_connections()
