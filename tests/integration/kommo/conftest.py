"""The fixtures these tests use (defined in tests/support/fixtures)."""

from tests.support.fixtures.kommo import *  # noqa: F403
