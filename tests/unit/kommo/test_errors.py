"""Which failures are worth trying again: one reading for the queue consumers, the send
worker's exception pinned beside it."""

from __future__ import annotations

import pytest
from mailer_core.base.errors import Conflict, InvalidInput, MailerError, NotFound, UpstreamError
from mailer_core.kommo.errors import (
    KommoAccessDenied,
    KommoBusy,
    KommoDisconnected,
    KommoError,
    KommoInsufficientRights,
    KommoInvalidGrant,
    KommoMisconfigured,
    KommoNotFound,
    KommoRateLimited,
    is_retryable,
)
from mailer_core.rendering.personalize import permanent_failure

BLOCKED = KommoAccessDenied("Kommo blocked requests for account 1 (403)", kommo_status=403, retry_after=900)
RETRYABLE = [
    KommoBusy("the shared rate limit", retry_after=3.0),
    BLOCKED,
    KommoAccessDenied("no rights", kommo_status=401),
    KommoError("Kommo did not answer GET /api/v4/leads"),  # no answer
    KommoError("too many requests", kommo_status=429),
    KommoError("internal error", kommo_status=500),
    KommoError("gateway time-out", kommo_status=504),
    RuntimeError("a bug, or AWS"),
    ConnectionError("reset"),
]
FINAL = [
    KommoDisconnected("the account is disconnected", kommo_status=401),
    KommoInvalidGrant("invalid_grant", kommo_status=400),
    KommoError("bad request", kommo_status=400),
    KommoError("validation", kommo_status=422),
    KommoError("payment required", kommo_status=402),
    KommoNotFound("no lead 7", kommo_status=204),
    Conflict("the account is not connected to Kommo", field=None),
    InvalidInput("bad value", field="x"),
    NotFound("no such template"),
    UpstreamError("the queue refused the message"),
    MailerError("ours"),
]


@pytest.mark.parametrize("exc", RETRYABLE, ids=repr)
def test_worth_retrying(exc: Exception) -> None:
    assert is_retryable(exc) is True


@pytest.mark.parametrize("exc", FINAL, ids=repr)
def test_final(exc: Exception) -> None:
    assert is_retryable(exc) is False


def test_a_403_is_retried_by_the_queue_consumers() -> None:
    """The automation runner, the digital pipeline and Salesbot jobs wait out Kommo's block."""
    assert is_retryable(BLOCKED)


def test_the_send_worker_fails_an_email_at_once_on_a_403_while_rendering() -> None:
    """The documented exception (is_retryable's docstring): the send path keeps its own reading."""
    assert permanent_failure(BLOCKED) == f"Kommo refused to give the email's CRM data: {BLOCKED}"
    assert permanent_failure(KommoDisconnected("gone", kommo_status=401)) is not None
    assert permanent_failure(KommoNotFound("no lead 7", kommo_status=204)) is not None
    # every other Kommo error is retried by the send path, a 4xx included
    for exc in (KommoBusy("busy"), KommoError("down", kommo_status=503), KommoError("bad", kommo_status=400)):
        assert permanent_failure(exc) is None


def test_a_429s_pause_is_retried_after_kommos_wait() -> None:
    paused = KommoRateLimited("Kommo asked to wait 300 s", kommo_status=429, retry_after=300)
    assert is_retryable(paused) and paused.retry_after == 300
    assert permanent_failure(paused) is None  # the send worker gives the claim back


def test_a_403_refusing_rights_is_final_for_the_queues_and_fails_an_email_at_once() -> None:
    rights = KommoInsufficientRights("Kommo answered 403 (Forbidden)", kommo_status=403)
    assert not is_retryable(rights)
    assert permanent_failure(rights) == f"Kommo refused to give the email's CRM data: {rights}"


def test_kommo_refusing_our_client_is_retried_once_an_operator_fixed_it() -> None:
    assert is_retryable(KommoMisconfigured("Некорректный клиент", kommo_status=401))
