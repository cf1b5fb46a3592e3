"""Kommo's limits per account: the shared 7-requests-per-second bucket, a 429's pause and the 403 block.

Rate. Kommo allows 7 API requests per second per account, and answers 429 over it; every
Lambda that calls an account shares one GCRA bucket in the RateLimits table
(`kommo#{account_id}`, one conditional UpdateItem per request, see `rate_limit`). Requests are
paced evenly at 90 % of the rate (burst 1), one every 0.159 s: a sliding window of one second,
which is how the stand-in and a strict server count, then holds at most 7 even when a request
reaches Kommo up to 0.1 s later than its token was taken (Lambdas, networks and clocks
jitter). A burst would not do: with a burst of 7, GCRA lets 14 through in one second (7 at
once, then one every 1/7 s from the start). A caller whose token is due within
`kommo_max_rate_wait_seconds` sleeps for it through the injected clock; a longer wait raises
`KommoBusy` so that a queue consumer can put its job back with a delay instead.

429. Kommo's answer says how long to wait (`retry_after`, e.g. 300 s) and warns that 429s
repeated turn into a ban of the IP. `pause` holds the account's bucket until then
(`rate_buckets.hold`: the bucket's next free time moves forward), so no caller, in any
Lambda, sends a request to the account before Kommo's time; a caller that meets the hold
sleeps it out if it is short, else gets `KommoRateLimited` (retryable, with the wait).

Block. Repeated 429s make Kommo ban the caller's IP, after which it answers a plain "403
Forbidden" page to everything (a 403 with a problem+json body only refuses that one call for
lack of rights: `KommoInsufficientRights`, never seen here). On the ban the account is marked
`blocked` with the time (a conditional update
that never recreates a deleted account), the event is logged as an error with the account
id, and no request goes to that account until `kommo_block_cooloff_seconds` have passed:
`check_open` reads that from the account item when a client is made, and the gate remembers
it for the client's life. The first successful request after the cool-off marks the account
`active` again.
"""

from __future__ import annotations

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
PACING_MARGIN = 0.9  # pace at 90 % of Kommo's rate: requests reach Kommo with jitter
NO_DAILY_CAP = 10**12
ACTIVE, BLOCKED, DISCONNECTED = "active", "blocked", "disconnected"


def bucket_key(account_id: int) -> str:
    return f"{BUCKET_PREFIX}{int(account_id)}"


class AccountGate:
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
        self.clock = clock
        rps = requests_per_second if requests_per_second is not None else settings.kommo_requests_per_second
        self.rate = rps * PACING_MARGIN
        self.max_wait = max_wait if max_wait is not None else settings.kommo_max_rate_wait_seconds
        self.cooloff = cooloff if cooloff is not None else settings.kommo_block_cooloff_seconds
        self._blocked_until = float(account.blocked_until or 0) if account.status == BLOCKED else 0.0
        self._may_unblock = account.status == BLOCKED
        self.waited = 0.0  # seconds this gate slept for rate tokens (for logs and tests)

    # -- block -----------------------------------------------------------------------------

    def check_open(self) -> None:
        """Raise KommoAccessDenied while the account is blocked."""
        now = self.clock.timestamp()
        if now < self._blocked_until:
            until = datetime.fromtimestamp(self._blocked_until, UTC).isoformat(timespec="seconds")
            raise KommoAccessDenied(
                f"Kommo blocked requests for account {self.account_id} (403); "
                f"no request goes to it until {until}",
                kommo_status=403,
                retry_after=self._blocked_until - now,
            )

    def access_denied(self, error: KommoAccessDenied) -> None:
        """Kommo banned the IP (403): mark the account blocked for the cool-off, loudly."""
        now = self.clock.timestamp()
        until = now + self.cooloff
        self._blocked_until = max(self._blocked_until, until)
        self._may_unblock = False
        logger.error(
            "Kommo answered 403: the account is blocked, no requests until the cool-off ends",
            extra={
                "account_id": self.account_id,
                "kommo_detail": error.detail,
                "blocked_until": datetime.fromtimestamp(until, UTC).isoformat(timespec="seconds"),
            },
        )
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

    # -- rate ------------------------------------------------------------------------------

    def before_request(self) -> None:
        """Refuse a blocked account, then take one token of the account's shared bucket."""
        self.check_open()
        waited = 0.0
        while True:
            decision = rate_buckets.take(
                bucket_key(self.account_id),
                rate_per_second=self.rate,
                daily_cap=NO_DAILY_CAP,
                now=self.clock.timestamp(),
                burst=1,
            )
            if decision.allowed:
                return
            if waited + decision.retry_after > self.max_wait:
                raise self._busy(decision)
            self.clock.sleep(decision.retry_after)
            waited += decision.retry_after
            self.waited += decision.retry_after

    def _busy(self, decision: rate_buckets.RateDecision) -> KommoBusy:
        wait = decision.retry_after
        if decision.reason == "held":
            return KommoRateLimited(
                f"Kommo asked for a pause: no request goes to account {self.account_id} for {wait:.0f} s",
                retry_after=wait,
            )
        return KommoBusy(
            f"Kommo's rate limit for account {self.account_id} is taken by other callers; "
            f"try again in {wait:.1f} s",
            retry_after=wait,
        )

    def pause(self, seconds: float, error: KommoError) -> None:
        """Kommo answered 429 asking for `seconds`: no request to the account until then."""
        now = self.clock.timestamp()
        until = now + seconds
        rate_buckets.hold(bucket_key(self.account_id), until=until, now=now)
        logger.warning(
            "Kommo answered 429: the account's budget is paused for the wait it asked",
            extra={
                "account_id": self.account_id,
                "paused_until": datetime.fromtimestamp(until, UTC).isoformat(timespec="seconds"),
            },
        )
