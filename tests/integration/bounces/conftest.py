"""The fixtures these tests use (defined in tests/support/fixtures)."""

from tests.support.fixtures.bounces import *  # noqa: F403
from tests.support.fixtures.imap import *  # noqa: F403
