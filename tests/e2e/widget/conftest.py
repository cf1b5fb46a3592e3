"""The fixtures these tests use (defined in tests/support/fixtures)."""

from tests.support.fixtures.browser import *  # noqa: F403
