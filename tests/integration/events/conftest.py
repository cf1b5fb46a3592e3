"""The fixtures these tests use (defined in tests/support/fixtures)."""

from tests.support.fixtures.core import *  # noqa: F403
