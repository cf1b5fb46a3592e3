"""The fixtures these tests use (defined in tests/support/fixtures)."""

from tests.support.fixtures.tracking import *  # noqa: F403
