"""The fixtures these tests use (defined in tests/support/fixtures)."""

from tests.support.fixtures.attachments import *  # noqa: F403
