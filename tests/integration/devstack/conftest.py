"""Fixtures for the local stack's machinery: one moto server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.moto_server import local_aws_environment, start_moto_server


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto server for these tests; each test makes its own resources in it."""
    server = start_moto_server()
    try:
        yield server.endpoint
    finally:
        server.stop()


@pytest.fixture
def local_aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point boto3 (AWS_ENDPOINT_URL) at the moto server for this test."""
    for name, value in local_aws_environment(moto_endpoint).items():
        monkeypatch.setenv(name, value)
    return moto_endpoint
