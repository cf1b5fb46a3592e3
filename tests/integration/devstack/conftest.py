"""The fixtures these tests use (defined in tests/support/fixtures)."""

from tests.support.fixtures.devstack import *  # noqa: F403
