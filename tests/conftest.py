"""The session's plugins (tests/support/plugins) and the one fixture every tier shares."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto import mock_aws

from devstack.resources import StackResources
from tests.support.stack import stack_for_functions

# Loaded with this file, before any test: fake AWS credentials, the patches of third-party
# internals the whole session relies on.
pytest_plugins = [
    "tests.support.plugins.fake_aws",
    "tests.support.plugins.botocore_data",
    "tests.support.plugins.loopback_only",
]


@pytest.fixture
def aws_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[StackResources]:
    """GIVEN the template's tables, queues, key, bucket and schedule group in moto."""
    with mock_aws():
        yield from stack_for_functions(monkeypatch)
