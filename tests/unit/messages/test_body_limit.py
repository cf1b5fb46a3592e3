"""One 8 MB limit for an email's body and a template's: `limits.BODY_BYTES`."""

from __future__ import annotations

import pytest
from mailer_core.accounts.auth import Caller
from mailer_core.base import limits
from mailer_core.base.errors import PayloadTooLarge
from mailer_core.messages.requests import parse_request
from mailer_core.templates import api as templates

CALLER = Caller(31000001, "acme", user_id=1, is_admin=True)
AT_LIMIT = "a" * limits.BODY_BYTES
OVER = "я" * (limits.BODY_BYTES // 2 + 1)  # two bytes a character: over in bytes, not in characters


def test_the_limit_is_8_mb() -> None:
    assert limits.BODY_BYTES == 8 * 1024 * 1024


def test_an_email_body_may_take_8_mb_and_no_more() -> None:
    request = parse_request({"subject": "s", "html": AT_LIMIT})
    assert (request.subject, request.html) == ("s", AT_LIMIT)
    with pytest.raises(PayloadTooLarge) as err:
        parse_request({"subject": "s", "html": OVER})
    assert err.value.message == "the email body is larger than 8 MB"
    assert (err.value.field, err.value.details["limit_bytes"]) == ("html", limits.BODY_BYTES)


def test_a_template_body_may_take_8_mb_and_no_more() -> None:
    with pytest.raises(PayloadTooLarge) as err:
        templates._validated(CALLER, {"name": "n", "subject": "s", "html": OVER}, current=None)
    assert err.value.message == "the template body is larger than 8 MB"
    assert (err.value.field, err.value.details["limit_bytes"]) == ("html", limits.BODY_BYTES)
