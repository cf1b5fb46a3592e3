"""Kommo's errors in Kommo's own words, raised by the client and read by every caller."""

from __future__ import annotations

from typing import Any

from mailer_core.base.errors import Busy, MailerError, NotFound, UpstreamError


class KommoError(UpstreamError):
    """Kommo answered with an error (or not at all). `kommo_status` is None for no answer."""

    def __init__(
        self,
        message: str,
        *,
        kommo_status: int | None = None,
        title: str | None = None,
        detail: str | None = None,
        validation_errors: list[Any] | None = None,
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        details: dict[str, Any] = {"kommo_status": kommo_status}
        if title:
            details["kommo_title"] = title
        if detail:
            details["kommo_detail"] = detail
        if validation_errors:
            details["kommo_validation_errors"] = validation_errors
        super().__init__(message, **details)
        self.kommo_status = kommo_status
        self.title = title
        self.detail = detail
        self.hint = hint
        self.validation_errors = validation_errors or []
        self.retry_after = retry_after


class KommoAccessDenied(KommoError):
    """401 or 403: the token is bad or revoked, or Kommo banned our IP address. Stop calling."""


class KommoInsufficientRights(KommoError):
    """Kommo refused this one call for lack of rights (403 with a problem+json body): an
    administrators' endpoint (`/api/v4/users`, the Salesbot continue) called with another
    user's token. Final for this call; the account and its other calls are untouched."""

    code = "kommo_insufficient_rights"


class KommoMisconfigured(KommoError):
    """The token endpoint refused our integration itself (a wrong client id, secret or redirect
    URI): an operator must fix the stack's settings. No account's tokens are at fault, so none
    is disconnected; the work is retried once the settings are right."""

    code = "kommo_misconfigured"


class KommoInvalidGrant(KommoAccessDenied):
    """The token endpoint refused the authorization code or the refresh token (400/401)."""


class KommoDisconnected(KommoAccessDenied):
    """The account's tokens were refused (or it was never connected): the widget must be reinstalled."""

    status = 409
    code = "kommo_disconnected"


class KommoBusy(KommoError, Busy):
    """The account's shared rate limit would make this caller wait too long; retry after
    `retry_after`. A `base.errors.Busy`: a queue worker defers the job instead of failing it."""

    status = 503
    code = "kommo_busy"


class KommoRateLimited(KommoBusy):
    """Kommo answered 429 and asked for a longer wait than a caller may sleep: the calls through
    its budget are paused until then; retry after `retry_after` (the queue redelivers)."""


class KommoNotFound(NotFound):
    """The entity does not exist in Kommo (Kommo answers 204 No Content, or 404)."""

    def __init__(self, message: str, *, kommo_status: int, **details: Any) -> None:
        super().__init__(message, kommo_status=kommo_status, **details)
        self.kommo_status = kommo_status


def is_retryable(exc: BaseException) -> bool:
    """Whether doing the same work again later may succeed: the queue consumers' one reading
    (the automation runner, the digital pipeline and Salesbot jobs).

    - the connection is gone (`KommoDisconnected`, `KommoInvalidGrant`): no, only a reinstall helps;
    - `KommoBusy` (`KommoRateLimited` included: a 429's pause): yes, after `retry_after`;
    - `KommoMisconfigured` (Kommo refused our client id or secret): yes, once an operator fixed it;
    - `KommoAccessDenied` otherwise (the IP ban and the account's block, a 401 after a refresh):
      yes, the block ends after its cool-off (15 minutes);
    - any other `KommoError`: yes for no answer, 429 and 5xx; no for the other 4xx (a 403 for
      lack of rights, `KommoInsufficientRights`, included: the same call is refused again);
    - any other `MailerError` (`KommoNotFound` included): no, a refusal is final;
    - anything else (AWS, a bug): yes, it may pass.

    The send worker is the exception, kept as it was: a Kommo error met while rendering an email
    is read by `rendering.personalize.permanent_failure`, where a `KommoAccessDenied` (the ban
    included) or `KommoInsufficientRights` fails the email at once with the reason (the user sees
    it and can send again) instead of waiting out the block, and every other Kommo error but
    `KommoNotFound` is retried.
    """
    if isinstance(exc, KommoDisconnected | KommoInvalidGrant):
        return False
    if isinstance(exc, KommoBusy | KommoAccessDenied | KommoMisconfigured):
        return True
    if isinstance(exc, KommoError):
        return exc.kommo_status is None or exc.kommo_status == 429 or exc.kommo_status >= 500
    return not isinstance(exc, MailerError)
