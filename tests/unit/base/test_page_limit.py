"""A list route's `limit`: one parser for every route (campaigns, their log and CSV export)."""

from __future__ import annotations

import pytest
from mailer_core.base.errors import InvalidInput
from mailer_core.base.validation import page_limit


def test_absent_gives_the_default_and_a_number_in_range_is_taken() -> None:
    assert page_limit(None, maximum=100, default=50) == 50
    assert page_limit("1", maximum=100, default=50) == 1
    assert page_limit("100", maximum=100, default=50) == 100


@pytest.mark.parametrize(
    ("raw", "words"), [("x", "whole number"), ("0", "from 1 to 100"), ("101", "from 1 to 100")]
)
def test_a_bad_limit_is_refused_naming_the_field(raw: str, words: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        page_limit(raw, maximum=100, default=50)
    assert refused.value.field == "limit" and words in str(refused.value)
