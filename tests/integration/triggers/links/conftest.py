"""The fixtures these tests use (defined in tests/support/fixtures)."""

from tests.support.fixtures.links import *  # noqa: F403
