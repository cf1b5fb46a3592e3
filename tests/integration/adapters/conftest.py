"""The fixtures these tests use (defined in tests/support/fixtures)."""

from tests.support.fixtures.smtp import *  # noqa: F403
