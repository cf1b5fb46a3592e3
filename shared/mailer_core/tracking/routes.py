"""The public track routes' rules: the open pixel and clicks (trigger links included).

A request is checked (its signed token), told apart as a person's or a machine's
(`machine_traffic`), recorded once (`record`), and answered: the pixel, a redirect to a
stored target, or a trigger link's thank-you page. A person's click on a trigger link runs
the link's triggers (`triggers.link_clicks`), a machine's never does. Nothing here renders,
sends or calls Kommo: the track function stays small.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pynamodb.exceptions import UpdateError

from mailer_core.base.logs import logger
from mailer_core.store.conditions import is_condition_failure
from mailer_core.tracking import machine_traffic, record, tokens
from mailer_core.triggers import link_clicks as trigger_link_clicks

# A 1×1 transparent GIF: 43 bytes.
PIXEL_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
assert len(PIXEL_GIF) == 43


@dataclass(frozen=True)
class TrackRequest:
    """What the track routes know about one request."""

    token: str
    method: str
    user_agent: str
    source_ip: str
    headers: dict[str, str]
    now: datetime


def _classify(request: TrackRequest, token: tokens.TrackingToken, kind: str) -> machine_traffic.Verdict:
    """The verdict on the request; a person's when the account's filter is off."""
    verdict = machine_traffic.classify(
        kind=kind,
        method=request.method,
        user_agent=request.user_agent,
        source_ip=request.source_ip,
        headers=request.headers,
        seconds_since_send=request.now.timestamp() - token.issued_at,
    )
    if verdict.machine and not machine_traffic.filter_on(token.account_id):
        return machine_traffic.PERSON
    return verdict


def handle_open(request: TrackRequest) -> None:
    """The pixel route: record the open if the token is ours. Never raises: the pixel is the
    same answer whatever happens (a storage failure is logged)."""
    token = tokens.verify(request.token, kind=tokens.OPEN)
    if token is None:
        return
    try:
        verdict = _classify(request, token, "open")
        record.record_open(token, machine=verdict.machine, when=request.now, machine_class=verdict.label)
    except UpdateError as exc:
        if not is_condition_failure(exc):
            logger.exception("open not recorded", extra={"message_id": token.message_id})
    except Exception:
        logger.exception("open not recorded", extra={"message_id": token.message_id})


@dataclass(frozen=True)
class ClickAnswer:
    """What the click route answers: a redirect to `location`, or the HTML `page`."""

    location: str | None = None
    page: str | None = None


def handle_click(request: TrackRequest) -> ClickAnswer | None:
    """The click route: the stored target to redirect to (the click recorded; a trigger link's
    triggers run for a person), the thank-you page of a trigger link without a target, or None
    for a forged token or an unknown link (a plain "link not found" page)."""
    token = tokens.verify(request.token, kind=tokens.CLICK)
    if token is None:
        return None
    try:
        target = record.resolve_click(token)
    except Exception:
        logger.exception("click target not read", extra={"message_id": token.message_id})
        return None
    if target is None:
        return None
    verdict = _classify(request, token, "click")
    machine = verdict.machine
    try:
        record.record_click(token, target, machine=machine, when=request.now, machine_class=verdict.label)
    except Exception:
        logger.exception("click not recorded", extra={"message_id": token.message_id})
    if target.link_id is not None:
        return _trigger_link_click(request, token, target, machine=machine)
    return ClickAnswer(location=target.url)


def _trigger_link_click(
    request: TrackRequest, token: tokens.TrackingToken, target: record.ClickTarget, *, machine: bool
) -> ClickAnswer:
    """Run the link's triggers for a person's GET (never for a machine, never for HEAD, even
    with the account's machine filter off); then the redirect or the thank-you page."""

    if not machine and request.method.upper() == "GET" and target.link_id is not None:
        try:
            outcome = trigger_link_clicks.on_person_click(
                token.account_id, token.message_id, target.link_id, target.entity, request.now
            )
            logger.info("trigger link clicked", extra={"link_id": target.link_id, "outcome": outcome})
        except Exception:  # the person still gets where the link leads
            logger.exception("trigger link's triggers not announced", extra={"link_id": target.link_id})
    if target.url:
        return ClickAnswer(location=target.url)
    return ClickAnswer(
        page=trigger_link_clicks.thank_you_page(target.locale, request.headers.get("accept-language", ""))
    )
