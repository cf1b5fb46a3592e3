"""The widget's settings per Kommo account: who may use Mailer, who administers it, defaults.

Stored on the account's item (AccountModel); an attribute that was never set means its
default, so an account that never saved settings (or has no item at all: the tests and the
local stack compose without installing) behaves as "everyone allowed, Kommo's administrators
administer, stock defaults".

- `allowed_user_ids`: the Kommo users who may use Mailer; null or empty means every user of
  the account. Administrators are always allowed.
- `admin_user_ids`: Mailer administrators besides Kommo's account administrators (the
  token's `is_admin`). An administrator sees and manages every user's mailboxes, messages and
  templates, lifts suppressions and changes these settings.
- `default_rate_per_second`, `default_daily_cap`: what a new mailbox gets when the request
  does not say.
- `track_opens`: whether a new email or template carries the open pixel when it does not say.
- `filter_machine_traffic`: tell machines' opens and clicks apart (mailer_core.tracking.machine_traffic).
- `auto_emails_per_entity_per_day`: how many automatic emails one template may send to one
  lead, contact or company a day (the automation reads `auto_email_cap`).
- `complaints_run_failed`: whether a recipient's spam complaint runs the email's "failed"
  triggers (default false: a complaint only suppresses the address; docs/bounces.md).
- `opt_out_footer`: a campaign email whose body has no `{{ unsubscribe_url }}` gets a short
  unsubscribe footer (default true); off, a campaign refuses such a template at its start
  (docs/opt-out.md).
- `opt_out_tag`: a tag put on the Kommo contact of a person who unsubscribes (default none).
- `opt_out_note`: a note on that contact saying they unsubscribed (default false).
- `campaign_bounce_warning`, `campaign_bounce_interrupt` (5 and 10 per cent),
  `campaign_complaint_warning`, `campaign_complaint_interrupt` (0.1 and 0.5 per cent): the
  rates of sent emails at which a campaign warns and stops itself (docs/campaigns.md), frozen
  into each campaign at its start.

The value only: `access.settings_of` gives an account's settings as the warm container knows
them, `settings_api` reads and changes them for the widget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mailer_core.store.models import AccountModel

if TYPE_CHECKING:
    pass  # a type only: the send worker needs no JWT library

DEFAULT_RATE_PER_SECOND = 1.0
DEFAULT_DAILY_CAP = 2000
DEFAULT_AUTO_EMAILS_PER_ENTITY_PER_DAY = 3
MAX_TAG_CHARS = 100
# The campaign thresholds (per cent of sent emails) and their defaults.
CAMPAIGN_THRESHOLDS = {
    "campaign_bounce_warning": 5.0,
    "campaign_bounce_interrupt": 10.0,
    "campaign_complaint_warning": 0.1,
    "campaign_complaint_interrupt": 0.5,
}
MAX_USERS = 1000  # ids in one list; a Kommo account has far fewer users
FIELDS = (
    "allowed_user_ids",
    "admin_user_ids",
    "default_rate_per_second",
    "default_daily_cap",
    "track_opens",
    "filter_machine_traffic",
    "auto_emails_per_entity_per_day",
    "complaints_run_failed",
    "opt_out_footer",
    "opt_out_tag",
    "opt_out_note",
    *CAMPAIGN_THRESHOLDS,
)


@dataclass(frozen=True)
class AccountSettings:
    """An account's settings with the defaults filled in."""

    allowed_user_ids: tuple[int, ...] | None = None  # None: every user of the account
    admin_user_ids: tuple[int, ...] = ()
    default_rate_per_second: float = DEFAULT_RATE_PER_SECOND
    default_daily_cap: int = DEFAULT_DAILY_CAP
    track_opens: bool = True
    filter_machine_traffic: bool = True
    auto_emails_per_entity_per_day: int = DEFAULT_AUTO_EMAILS_PER_ENTITY_PER_DAY
    complaints_run_failed: bool = False
    opt_out_footer: bool = True
    opt_out_tag: str | None = None
    opt_out_note: bool = False
    campaign_thresholds: tuple[tuple[str, float], ...] = tuple(CAMPAIGN_THRESHOLDS.items())

    def thresholds(self) -> dict[str, float]:
        """The campaign thresholds by their names in a campaign (`bounce_warning` …)."""
        return {name.removeprefix("campaign_"): value for name, value in self.campaign_thresholds}

    def is_admin(self, user_id: int, *, kommo_admin: bool) -> bool:
        return kommo_admin or user_id in self.admin_user_ids

    def allows(self, user_id: int) -> bool:
        return self.allowed_user_ids is None or user_id in self.allowed_user_ids

    def view(self) -> dict[str, Any]:
        return {
            "allowed_user_ids": list(self.allowed_user_ids) if self.allowed_user_ids is not None else None,
            "admin_user_ids": list(self.admin_user_ids),
            "default_rate_per_second": self.default_rate_per_second,
            "default_daily_cap": self.default_daily_cap,
            "track_opens": self.track_opens,
            "filter_machine_traffic": self.filter_machine_traffic,
            "auto_emails_per_entity_per_day": self.auto_emails_per_entity_per_day,
            "complaints_run_failed": self.complaints_run_failed,
            "opt_out_footer": self.opt_out_footer,
            "opt_out_tag": self.opt_out_tag,
            "opt_out_note": self.opt_out_note,
            **dict(self.campaign_thresholds),
        }


def _ids(values: Any) -> tuple[int, ...]:
    return tuple(sorted({int(v) for v in values or ()}))


def from_account(account: AccountModel | None) -> AccountSettings:
    """The settings stored on `account` (None: an account without an item), defaults filled in."""
    if account is None:
        return AccountSettings()
    allowed = _ids(account.allowed_user_ids)
    return AccountSettings(
        allowed_user_ids=allowed or None,
        admin_user_ids=_ids(account.admin_user_ids),
        default_rate_per_second=(
            float(account.default_rate_per_second)
            if account.default_rate_per_second is not None
            else DEFAULT_RATE_PER_SECOND
        ),
        default_daily_cap=(
            int(account.default_daily_cap) if account.default_daily_cap is not None else DEFAULT_DAILY_CAP
        ),
        track_opens=account.track_opens is not False,
        filter_machine_traffic=account.filter_machine_traffic is not False,
        auto_emails_per_entity_per_day=(
            int(account.auto_emails_per_entity_per_day)
            if account.auto_emails_per_entity_per_day is not None
            else DEFAULT_AUTO_EMAILS_PER_ENTITY_PER_DAY
        ),
        complaints_run_failed=account.complaints_run_failed is True,
        opt_out_footer=account.opt_out_footer is not False,
        opt_out_tag=account.opt_out_tag or None,
        opt_out_note=account.opt_out_note is True,
        campaign_thresholds=tuple(
            (name, float(getattr(account, name)) if getattr(account, name) is not None else default)
            for name, default in CAMPAIGN_THRESHOLDS.items()
        ),
    )
