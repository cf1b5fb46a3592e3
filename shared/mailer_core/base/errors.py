"""Errors the core raises; the HTTP layer turns each into a status and a JSON body."""

from __future__ import annotations

from typing import Any


class MailerError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        body.update(self.details)
        return body


class InvalidInput(MailerError):
    """The request names a field with a problem: 422 (400 for a body that is not JSON)."""

    status = 422
    code = "invalid"


class MalformedRequest(MailerError):
    status = 400
    code = "malformed"


class Unauthorized(MailerError):
    status = 401
    code = "unauthorized"


class Forbidden(MailerError):
    status = 403
    code = "forbidden"


class NotFound(MailerError):
    status = 404
    code = "not_found"


class Conflict(MailerError):
    status = 409
    code = "conflict"


class PayloadTooLarge(MailerError):
    status = 413
    code = "too_large"


class TooManyRequests(MailerError):
    """A limit of the account's (a daily cap) or of the route's; the body says which and until when."""

    status = 429
    code = "too_many_requests"


class UpstreamError(MailerError):
    """An external system (Kommo, KMS …) failed in a way the caller may retry later."""

    status = 502
    code = "upstream_error"


class Busy(UpstreamError):
    """A shared budget is taken for now (an account's Kommo rate, a 429's pause): the same work
    may go through after `retry_after` seconds. A queue worker puts the job back on its queue
    with that delay instead of waiting in-process (`events.shares`); the API answers 503."""

    status = 503
    code = "busy"
    retry_after: float | None = None
