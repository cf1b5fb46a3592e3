"""The fixtures these tests use (defined in tests/support/fixtures)."""

from tests.support.fixtures.pipeline import *  # noqa: F403
