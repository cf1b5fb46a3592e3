"""Shared queues worked fairly: a slow or over-budget account waits alone.

The actions, pipeline and install queues are each drained by a small pool of workers (the
event source's maximum concurrency, 2 in infra/template.yaml) whose SQS batches mix accounts.
Without rules one account can take them all: a backlog of its jobs fills both workers, and a
job whose Kommo budget is spent used to sleep up to 10 s in-process, holding the worker and
every other account's jobs of its batch. So each record of a batch goes through `FairBatch.run`:

1. **Busy accounts wait on the queue, not in a worker.** A job whose account's Kommo budget is
   not there within a moment (`kommo_max_rate_wait_seconds`, 1 s in these functions) raises
   `base.errors.Busy` with the wait; the job goes back to its queue with that delay
   (`adapters.sqs.requeue`: a new message, so waiting never counts toward the dead letters),
   and the rest of the batch goes on. The account is remembered as busy for the rest of the
   batch: its other jobs go back at once, without trying.
2. **A share per account.** A job takes a lease of its account's share of the pool
   (`store.worker_shares`: at most `worker_share` jobs of one account in flight across all
   workers, a conditional write keyed by the SQS message id, so a redelivery renews its own
   lease and never counts twice; a lease that a dead worker left ends after
   `worker_share_lease_seconds`). The lease passes from one job of the account to its next in
   the same batch and is let go when the batch is done (`close`), so a worker keeps the slot
   through its batch and another worker's jobs of that account go back. A job refused goes
   back with a delay that grows with its deferrals (`SHARE_RETRY_SECONDS`, doubled each time,
   at most `SHARE_RETRY_CAP_SECONDS`), so the other accounts' jobs behind it in the queue
   reach the other worker.

A job whose body names no account (malformed; the handler refuses it) runs as before.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mailer_core.adapters import sqs
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.config import get_settings
from mailer_core.base.errors import Busy
from mailer_core.base.logs import logger
from mailer_core.store import worker_shares

SHARE_RETRY_SECONDS = 5  # a job refused a share comes back after this, doubled per deferral
SHARE_RETRY_CAP_SECONDS = 30
BUSY_MIN_SECONDS = 1  # a busy account's job comes back no sooner than this
DEFERRED = "deferred"


def account_in_body(body: str, *names: str) -> str | None:
    """The account a job's JSON body names: the first of `names` present (joined with "#" when
    several are given and all present), or None for a body that is not such JSON."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    parts = [data.get(name) for name in names]
    if not parts or any(p is None or isinstance(p, dict | list) or str(p) == "" for p in parts):
        return None
    return "#".join(str(p).lower() for p in parts)


@dataclass
class FairBatch:
    """One invocation's batch of a shared queue (`pool`: "actions", "pipeline", "install")."""

    pool: str
    queue_url: str
    clock: Clock = field(default_factory=lambda: SYSTEM_CLOCK)
    share: int | None = None
    lease_seconds: float | None = None
    busy_until: dict[str, float] = field(default_factory=dict)
    deferred: list[tuple[str, int, str]] = field(default_factory=list)  # (account, delay, why)
    held: dict[str, str] = field(default_factory=dict)  # account → the holder of its lease here

    def run(
        self, *, holder: str, body: str, account: str | None, work: Callable[[], str], deferrals: int = 0
    ) -> str:
        """Do one record's `work` within its account's share, or put it back: its outcome, or
        `DEFERRED`. `holder` is the SQS message id (the same on each delivery of the message)."""
        if account is None:
            return work()
        now = self.clock.timestamp()
        if self.busy_until.get(account, 0.0) > now:
            return self._defer(account, body, self.busy_until[account] - now, deferrals, "busy")
        if not self._lease(account, holder, now):
            wait = min(SHARE_RETRY_CAP_SECONDS, SHARE_RETRY_SECONDS * 2 ** min(deferrals, 10))
            # Its other jobs in this batch would be refused too: they go back without a write.
            self.busy_until[account] = now + min(wait, SHARE_RETRY_SECONDS)
            return self._defer(account, body, wait, deferrals, "share")
        try:
            return work()
        except Busy as exc:
            wait = max(float(BUSY_MIN_SECONDS), float(exc.retry_after or 0.0))
            self.busy_until[account] = self.clock.timestamp() + wait
            return self._defer(account, body, wait, deferrals, f"busy: {exc.message}")

    def run_record(
        self,
        record: Mapping[str, Any],
        work: Callable[[], str],
        *,
        account_fields: tuple[str, ...] = ("account_id",),
    ) -> str:
        """`run` for one record of Lambda's SQS event (its raw form): the message id holds the
        slot, the body's `account_fields` name the account, its attributes count the deferrals."""
        body = str(record.get("body") or "")
        return self.run(
            holder=str(record.get("messageId") or ""),
            body=body,
            account=account_in_body(body, *account_fields),
            deferrals=deferrals_of(record.get("messageAttributes")),
            work=work,
        )

    def _lease(self, account: str, holder: str, now: float) -> bool:
        """The account's slot for this job: passed on from this batch's previous job of the
        account (kept until `close`), or taken."""
        settings = get_settings()
        lease = self.lease_seconds if self.lease_seconds is not None else settings.worker_share_lease_seconds
        previous = self.held.get(account)
        if previous is not None and worker_shares.hand_over(
            self.pool, account, previous, holder, now=now, lease_seconds=lease
        ):
            self.held[account] = holder
            return True
        share = self.share if self.share is not None else settings.worker_share
        if worker_shares.acquire(
            self.pool, account, holder, share=share, now=now, lease_seconds=lease
        ).granted:
            if previous is not None and previous != holder:
                worker_shares.release(self.pool, account, previous)
            self.held[account] = holder
            return True
        return False

    def close(self) -> None:
        """Let the batch's leases go (the handler calls it when the batch is done, whatever
        happened; a worker that dies leaves them to expire)."""
        held, self.held = self.held, {}
        for account, holder in held.items():
            worker_shares.release(self.pool, account, holder)

    def __enter__(self) -> FairBatch:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _defer(self, account: str, body: str, wait: float, deferrals: int, why: str) -> str:
        delay = max(1, min(math.ceil(wait), sqs.MAX_DELAY_SECONDS))
        sqs.requeue(self.queue_url, body, delay, deferrals=deferrals + 1)
        self.deferred.append((account, delay, why))
        logger.info(
            "job deferred for its account's sake",
            extra={"pool": self.pool, "account": account, "delay": delay, "reason": why},
        )
        return DEFERRED


def deferrals_of(attributes: dict[str, object] | None) -> int:
    """How often a record was deferred, from its SQS message attributes (Lambda's record form)."""
    raw = (attributes or {}).get(sqs.DEFERRALS_ATTRIBUTE)
    if not isinstance(raw, dict):
        return 0
    value = raw.get("stringValue") or raw.get("StringValue")
    try:
        return max(0, int(str(value)))
    except ValueError:
        return 0
