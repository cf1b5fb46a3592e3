"""The fixtures these tests use (defined in tests/support/fixtures)."""

from tests.support.fixtures.access import *  # noqa: F403
