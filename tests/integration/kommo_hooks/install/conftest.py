"""The fixtures these tests use (defined in tests/support/fixtures)."""

from tests.support.fixtures.kommo_oauth import *  # noqa: F403
