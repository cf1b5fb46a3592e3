"""Business metrics: each email sent, failed, bounced or opened, counted in CloudWatch.

One line of CloudWatch's embedded metric format (EMF, through Powertools) per event, written
at once to the function's log, where CloudWatch turns it into the metric `sent`, `failed`,
`bounced` or `opened` (Count) in the namespace `Mailer`, twice: with the dimension `service`
alone (the totals the template's alarms and dashboard read) and with `service`, `account` and
`mailbox` (whose emails they were). Nothing is gathered for the handler to flush: one batch
holds emails of several accounts and mailboxes, while a Powertools `Metrics` flush gives all
its metrics the same dimensions; and the "sent" record is written in a background thread.

Its callers count each event once, where it is recorded once (`events.message_events`, the
actions function's "opened"). A metric never fails what it counts: a failure is logged.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Literal

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from mailer_core.base.logs import logger

NAMESPACE = "Mailer"  # infra/template.yaml's alarms and dashboard read this namespace
SERVICE = "mailer"  # and this value of the dimension `service`
NO_MAILBOX = "none"
Event = Literal["sent", "failed", "bounced", "opened"]
EVENTS: tuple[Event, ...] = ("sent", "failed", "bounced", "opened")

_one_writer = threading.Lock()  # a line is written whole, whichever thread records the event


def count(event: Event, account_id: int, mailbox_id: str | None) -> None:
    """One `event` of an email of this account, sent from this mailbox."""
    if is_metrics_disabled():
        return
    try:
        line = emf_line(event, account_id, mailbox_id)
        with _one_writer:
            sys.stdout.write(line + "\n")
    except Exception:
        logger.exception("could not count the email", extra={"metric": event, "account_id": account_id})


def emf_line(event: Event, account_id: int, mailbox_id: str | None) -> str:
    """The EMF line of one event: the totals and the account's and mailbox's share, in one."""
    if event not in EVENTS:
        raise ValueError(f"unknown metric {event!r}")
    emf = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)
    emf.add_metric(name=event, unit=MetricUnit.Count, value=1)
    emf.add_dimensions(service=SERVICE, account=str(int(account_id)), mailbox=mailbox_id or NO_MAILBOX)
    return json.dumps(emf.serialize_metric_set(), separators=(",", ":"))
