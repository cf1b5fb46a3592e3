"""One reading of a lost conditional write, whichever way DynamoDB's answer arrived."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from mailer_core.store.conditions import is_condition_failure
from pynamodb.exceptions import PutError, UpdateError


def client_error(code: str, message: str = "something") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "UpdateItem")


@pytest.mark.parametrize(
    ("error", "lost"),
    [
        (client_error("ConditionalCheckFailedException"), True),
        (UpdateError("Failed to update item", client_error("ConditionalCheckFailedException")), True),
        (PutError("Failed to put item", client_error("ConditionalCheckFailedException")), True),
        (UpdateError("Failed to update item", client_error("ProvisionedThroughputExceededException")), False),
        (client_error("ValidationException", "The conditional request failed"), False),
        (UpdateError("Failed to update item", client_error("InternalServerError")), False),
        (RuntimeError("connection reset"), False),
        # moto's words only: no code to read
        (UpdateError("Failed to update item: ConditionalCheckFailed"), True),
    ],
)
def test_a_condition_that_was_false_is_told_from_a_failure(error: BaseException, lost: bool) -> None:
    assert is_condition_failure(error) is lost
