"""Telling a conditional write that lost (its condition was false) from one that failed.

"Exactly once" facts are conditional writes: losing the condition is an answer ("someone
else did it", "already recorded"), any other error is a failure to raise. One reading of
DynamoDB's answer for every module, whether it came through PynamoDB (which wraps botocore's
`ClientError` as the exception's `cause`) or from a boto3 client directly.
"""

from __future__ import annotations

from typing import Any

CONDITION_FAILED = "ConditionalCheckFailedException"


def is_condition_failure(exc: BaseException) -> bool:
    """Did a conditional write fail on its condition (rather than on the service)?"""
    for error in (exc, getattr(exc, "cause", None)):
        response: Any = getattr(error, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code") == CONDITION_FAILED:
            return True
    # moto and older PynamoDB versions only say it in the message
    return "ConditionalCheckFailed" in str(exc) or "ConditionalCheckFailed" in str(getattr(exc, "cause", ""))
