"""The fixtures these tests use (defined in tests/support). Campaigns need tracking configured
(every campaign email carries an unsubscribe link): every test here has it."""

from collections.abc import Iterator

import pytest

from tests.support.campaigns import paged_audience  # noqa: F401
from tests.support.fixtures.core import *  # noqa: F403
from tests.support.fixtures.tracking import tracked  # noqa: F401


@pytest.fixture(autouse=True)
def _tracking_configured(tracked: None) -> Iterator[None]:  # noqa: F811
    yield
