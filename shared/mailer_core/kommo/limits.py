"""Kommo's limits: the shared 7-requests-per-second budgets, a 429's pause and the 403 ban.

Rate. Kommo allows 7 API requests per second, counted per account and per IP address
(../shared/reference/kommo-api.md §3.2), and answers 429 over it. So a request takes a token
of two GCRA buckets in the RateLimits table, each one conditional UpdateItem (`rate_buckets`),
shared by every Lambda: the account's (`kommo#{account_id}`), then the budget of the address
the functions leave through (`kommo-egress#{kommo_egress_key}`, "shared" by default: on AWS
every function that leaves through one NAT gateway shares it, across accounts; "none" leaves
it out). When the second refuses, the first's token is let go unused (the budgets are only
ever under-used) and both are taken again after the wait, so that a request always leaves
right after its tokens were granted. Requests are paced evenly at 90 % of the rate (burst 1),
one every 0.159 s: a sliding window of one second, which is how the stand-in and a strict
server count, then holds at most 7 even when a request reaches Kommo up to 0.1 s later than
its token was taken (Lambdas, networks and clocks jitter). A burst would not do: with a burst
of 7, GCRA lets 14 through in one second (7 at once, then one every 1/7 s from the start). A
caller whose tokens are due within `kommo_max_rate_wait_seconds` sleeps for them through the
injected clock; a longer wait raises `KommoBusy` so that a queue consumer can put its job back
with a delay instead.

429. Kommo's answer says how long to wait (`retry_after`, e.g. 300 s) and warns that 429s
repeated turn into a ban of the IP. `pause` holds every bucket of the gate until then
(`rate_buckets.hold`: the bucket's next free time moves forward), so no caller, in any
Lambda, sends a request through that budget before Kommo's time; a caller that meets the
hold sleeps it out if it is short, else gets `KommoRateLimited` (retryable, with the wait).

Ban. Repeated 429s make Kommo ban the caller's IP, after which it answers a plain "403
Forbidden" page to everything (a 403 with a problem+json body only refuses that one call for
lack of rights: `KommoInsufficientRights`, never seen here). On the ban the account is marked
`blocked` with the time (a conditional update that never recreates a deleted account), the
event is logged as an error with the account id, the address's budget is held for the
cool-off, and no request goes to that account until `kommo_block_cooloff_seconds` have
passed: `check_open` reads that from the account item when a client is made, and the gate
remembers it for the client's life. The first successful request after the cool-off marks
the account `active` again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from pynamodb.exceptions import UpdateError

from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.config import get_settings
from mailer_core.base.logs import logger
from mailer_core.kommo.errors import KommoAccessDenied, KommoBusy, KommoError, KommoRateLimited
from mailer_core.store import rate_buckets
from mailer_core.store.conditions import is_condition_failure
from mailer_core.store.models import AccountModel

BUCKET_PREFIX = "kommo#"
EGRESS_PREFIX = "kommo-egress#"
NO_EGRESS_BUDGET = "none"
PACING_MARGIN = 0.9  # pace at 90 % of Kommo's rate: requests reach Kommo with jitter
NO_DAILY_CAP = 10**12
ACTIVE, BLOCKED, DISCONNECTED = "active", "blocked", "disconnected"


def bucket_key(account_id: int) -> str:
    return f"{BUCKET_PREFIX}{int(account_id)}"


def egress_bucket_key(key: str | None = None) -> str | None:
    """The bucket of the address the functions leave through; None when that budget is off."""
    name = (get_settings().kommo_egress_key if key is None else key).strip()
    if not name or name.lower() == NO_EGRESS_BUDGET:
        return None
    return f"{EGRESS_PREFIX}{name}"


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


class RateGate:
    """A `kommo.RequestGate` over budgets (bucket key, requests per second), taken in order.

    Alone (`egress_gate`) it serves calls made before an account exists (the install's code
    exchange); `AccountGate` adds the account's own budget and its block.
    """

    def __init__(
        self,
        buckets: Sequence[tuple[str, float]],
        *,
        clock: Clock = SYSTEM_CLOCK,
        max_wait: float | None = None,
        cooloff: float | None = None,
    ) -> None:
        settings = get_settings()
        self.buckets = [(key, rate * PACING_MARGIN) for key, rate in buckets]
        self.clock = clock
        self.max_wait = max_wait if max_wait is not None else settings.kommo_max_rate_wait_seconds
        self.cooloff = cooloff if cooloff is not None else settings.kommo_block_cooloff_seconds
        self.waited = 0.0  # seconds this gate slept for rate tokens (for logs and tests)

    # -- rate ------------------------------------------------------------------------------

    def check_open(self) -> None:
        """Nothing refuses a bare budget; `AccountGate` refuses a blocked account."""

    def before_request(self) -> None:
        """Refuse a blocked account, then take one token of every budget (waiting if short)."""
        self.check_open()
        waited = 0.0
        while True:
            refused = self._take_all()
            if refused is None:
                return
            key, decision = refused
            if waited + decision.retry_after > self.max_wait:
                raise self._busy(key, decision)
            self.clock.sleep(decision.retry_after)
            waited += decision.retry_after
            self.waited += decision.retry_after

    def _take_all(self) -> tuple[str, rate_buckets.RateDecision] | None:
        for key, rate in self.buckets:
            decision = rate_buckets.take(
                key, rate_per_second=rate, daily_cap=NO_DAILY_CAP, now=self.clock.timestamp(), burst=1
            )
            if not decision.allowed:
                return key, decision
        return None

    def _busy(self, key: str, decision: rate_buckets.RateDecision) -> KommoBusy:
        wait = decision.retry_after
        if decision.reason == "held":  # a 429's wait, or the address's ban
            return KommoRateLimited(
                f"Kommo asked for a pause: no request goes through {key} for {wait:.0f} s",
                retry_after=wait,
            )
        return KommoBusy(
            f"Kommo's rate limit ({key}) is taken by other callers; try again in {wait:.1f} s",
            retry_after=wait,
        )

    def pause(self, seconds: float, error: KommoError) -> None:
        """Kommo answered 429 asking for `seconds`: no request through these budgets until then."""
        now = self.clock.timestamp()
        until = now + seconds
        for key, _ in self.buckets:
            rate_buckets.hold(key, until=until, now=now)
        logger.warning(
            "Kommo answered 429: its budgets are paused for the wait it asked",
            extra={**self._log(), "buckets": [k for k, _ in self.buckets], "paused_until": _iso(until)},
        )

    def _log(self) -> dict[str, object]:
        return {}

    # -- answers ---------------------------------------------------------------------------

    def after_success(self) -> None:
        """Kommo answered 2xx: nothing to do for a bare budget."""

    def access_denied(self, error: KommoAccessDenied) -> None:
        """Kommo banned the IP (403): no request leaves through the address's budget for the cool-off."""
        now = self.clock.timestamp()
        until = now + self.cooloff
        for key, _ in self.buckets:
            if key.startswith(EGRESS_PREFIX):
                rate_buckets.hold(key, until=until, now=now)
        logger.error(
            "Kommo answered 403 (the IP is banned): no request through this address until the cool-off ends",
            extra={**self._log(), "kommo_detail": error.detail, "blocked_until": _iso(until)},
        )


def egress_gate(*, clock: Clock = SYSTEM_CLOCK) -> RateGate | None:
    """The gate of the address's budget alone; None when that budget is off."""
    key = egress_bucket_key()
    return RateGate([(key, _egress_rate())], clock=clock) if key else None


def _egress_rate() -> float:
    settings = get_settings()
    rate = settings.kommo_egress_requests_per_second
    return rate if rate is not None else settings.kommo_requests_per_second


class AccountGate(RateGate):
    """The `kommo.RequestGate` of one installed account (see the module docstring)."""

    def __init__(
        self,
        account: AccountModel,
        *,
        clock: Clock = SYSTEM_CLOCK,
        requests_per_second: float | None = None,
        max_wait: float | None = None,
        cooloff: float | None = None,
    ) -> None:
        settings = get_settings()
        self.account_id = int(account.account_id)
        rps = requests_per_second if requests_per_second is not None else settings.kommo_requests_per_second
        buckets = [(bucket_key(self.account_id), rps)]
        egress = egress_bucket_key()
        if egress is not None:
            buckets.append((egress, _egress_rate()))
        super().__init__(buckets, clock=clock, max_wait=max_wait, cooloff=cooloff)
        self._blocked_until = float(account.blocked_until or 0) if account.status == BLOCKED else 0.0
        self._may_unblock = account.status == BLOCKED

    def _log(self) -> dict[str, object]:
        return {"account_id": self.account_id}

    # -- block -----------------------------------------------------------------------------

    def check_open(self) -> None:
        """Raise KommoAccessDenied while the account is blocked."""
        now = self.clock.timestamp()
        if now < self._blocked_until:
            raise KommoAccessDenied(
                f"Kommo blocked requests for account {self.account_id} (403); "
                f"no request goes to it until {_iso(self._blocked_until)}",
                kommo_status=403,
                retry_after=self._blocked_until - now,
            )

    def access_denied(self, error: KommoAccessDenied) -> None:
        """Kommo banned the IP (403): mark the account blocked for the cool-off, loudly."""
        now = self.clock.timestamp()
        until = now + self.cooloff
        self._blocked_until = max(self._blocked_until, until)
        self._may_unblock = False
        super().access_denied(error)
        try:
            AccountModel(self.account_id).update(
                actions=[
                    AccountModel.status.set(BLOCKED),
                    AccountModel.blocked_until.set(until),
                    AccountModel.status_changed_at.set(datetime.fromtimestamp(now, UTC)),
                    AccountModel.status_detail.set(
                        f"Kommo answered 403: {error.detail or error.title or 'the IP is banned'}"
                    ),
                ],
                # A disconnected, disabled or uninstalled account keeps its status.
                condition=AccountModel.account_id.exists()
                & ~AccountModel.status.is_in(DISCONNECTED, "disabled", "uninstalled"),
            )
        except UpdateError as exc:
            if not is_condition_failure(exc):
                raise

    def after_success(self) -> None:
        """The first success after a block's cool-off marks the account active again."""
        if not self._may_unblock:
            return
        self._may_unblock = False
        now = self.clock.timestamp()
        try:
            AccountModel(self.account_id).update(
                actions=[
                    AccountModel.status.set(ACTIVE),
                    AccountModel.blocked_until.remove(),
                    AccountModel.status_changed_at.set(datetime.fromtimestamp(now, UTC)),
                    AccountModel.status_detail.remove(),
                ],
                condition=(AccountModel.status == BLOCKED) & (AccountModel.blocked_until <= now),
            )
        except UpdateError as exc:
            if not is_condition_failure(exc):
                raise
            return
        logger.info("Kommo answers the account again: unblocked", extra={"account_id": self.account_id})
