"""The fixtures these tests use (defined in tests/support/fixtures): the automation's (the
demo account in the Kommo stand-in, a mailbox) over the browser folder's."""

from tests.support.fixtures.automation import *  # noqa: F403
