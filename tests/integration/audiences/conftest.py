"""The fixtures these tests use (defined in tests/support/fixtures)."""

from tests.support.fixtures.audiences import *  # noqa: F403
from tests.support.fixtures.templates import *  # noqa: F403
