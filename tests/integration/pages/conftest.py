"""The fixtures these tests use (defined in tests/support/fixtures)."""

from tests.support.fixtures.automation import *  # noqa: F403
from tests.support.fixtures.pages import public  # noqa: F401
