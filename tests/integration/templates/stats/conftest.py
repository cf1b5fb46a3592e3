"""The fixtures these tests use (defined in tests/support/fixtures)."""

from tests.support.fixtures.visibility import *  # noqa: F403
