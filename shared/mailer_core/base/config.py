"""Runtime settings, read from the environment the first time they are needed.

Nothing here runs at import time, so importing a handler needs no environment variable but
the region. The names of tables, queues and the key come from infra/template.yaml, which
passes them to every function; the local stack sets the same variables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import lru_cache
from urllib.parse import urlsplit


# No __repr__ (it would print the secrets) and no __eq__ (settings are compared by identity): both
# also cost a cold start (40 fields).
@dataclass(frozen=True, repr=False, eq=False)
class Settings:
    accounts_table: str = "mailer-accounts"
    mailboxes_table: str = "mailer-mailboxes"
    messages_table: str = "mailer-messages"
    rate_limits_table: str = "mailer-rate-limits"
    uploads_table: str = "mailer-uploads"
    suppressions_table: str = "mailer-suppressions"
    kommo_installs_table: str = "mailer-kommo-installs"
    templates_table: str = "mailer-templates"
    triggers_table: str = "mailer-triggers"
    links_table: str = "mailer-links"
    web_pages_table: str = "mailer-web-pages"  # public web pages (mailer_core.pages)
    automation_table: str = "mailer-automation"
    template_stats_table: str = "mailer-template-stats"  # per-template counters (template_stats)
    campaigns_table: str = "mailer-campaigns"
    target_lists_table: str = "mailer-target-lists"
    target_list_members_table: str = "mailer-target-list-members"
    campaign_queue_url: str = ""  # campaign packages and steps (mailer_core.campaigns)
    actions_queue_url: str = ""
    pipeline_queue_url: str = (
        ""  # digital pipeline and Salesbot jobs (mailer_core.kommo_hooks.digital_pipeline)
    )
    send_queue_url: str = ""
    bulk_queue_url: str = ""
    kommo_auth_queue_url: str = ""
    bounce_poll_queue_url: str = ""
    kms_key_id: str = ""
    bucket: str = ""
    schedule_group: str = "default"
    scheduler_role_arn: str = ""
    timers_function_arn: str = ""
    kommo_client_id: str = ""
    # The client secret's Secrets Manager ARN (deployed); without it the plain value below,
    # which only tests and scripts set (mailer_core.adapters.secrets).
    kommo_client_secret_id: str = ""
    kommo_client_secret: str = ""
    kommo_redirect_uri: str = ""
    # Where the Kommo API lives; "{subdomain}" and "{domain}" (kommo.com, amocrm.ru …) are the account's.
    kommo_base_url: str = "https://{subdomain}.{domain}"
    # Kommo allows 7 API requests per second per account; every Lambda shares one bucket.
    kommo_requests_per_second: float = 7.0
    # Kommo also counts 7 per second per IP address: every function leaving through one address
    # (one NAT gateway) shares the budget named by this key, across accounts; "none": no such budget.
    kommo_egress_key: str = "shared"
    # That budget's rate; unset, the same as `kommo_requests_per_second`.
    kommo_egress_requests_per_second: float | None = None
    # A caller waits in-process for a Kommo rate token at most this long (else KommoBusy).
    kommo_max_rate_wait_seconds: float = 10.0
    # Access tokens are refreshed when they expire within this margin.
    kommo_refresh_margin_seconds: float = 3600.0
    # After a 403 (IP blocked), no call goes to that account for this long.
    kommo_block_cooloff_seconds: float = 900.0
    # Plain (unencrypted) SMTP is only for the local stack and tests.
    allow_plaintext_smtp: bool = False
    # Mailbox servers on loopback addresses (127.0.0.0/8, ::1): only for the local stack and
    # tests, whose servers listen on 127.0.0.1. Private and other non-public ones never.
    allow_loopback_mailboxes: bool = False
    # Extra CA bundle trusted for SMTP TLS (tests use a throwaway CA).
    smtp_ca_file: str = ""
    smtp_timeout_seconds: float = 30.0
    # Each of SMTP and IMAP gets this long per network step when a mailbox is checked in an
    # API call (API Gateway answers within 29 s; the two checks run side by side).
    mailbox_check_timeout_seconds: float = 8.0
    # Senders wait in-process for a rate token at most this long; longer waits go back to
    # the queue with a delay.
    max_rate_wait_seconds: float = 2.0
    max_send_attempts: int = 5
    extra_cors_origins: tuple[str, ...] = field(default_factory=tuple)
    # A shared queue's worker pool (actions, pipeline, install): at most this many of one
    # account's jobs in flight at once; its other jobs go back to the queue (events.shares).
    # Each function sets its own in infra/template.yaml (docs/operations.md says how to tune).
    worker_share: int = 1
    # A job's lease of its account's share ends after this long even if its worker died.
    worker_share_lease_seconds: float = 120.0
    # A campaign part's lease (mailer_core.campaigns.expansion): longer than the campaigns
    # function's Timeout (300 s), so a holder is dead before anyone else may take the part.
    campaign_part_lease_seconds: float = 330.0
    # The widget's API, per Kommo account: requests per second and the burst on top (a token
    # bucket in the RateLimits table, `api#{account}`); over it, 429 with Retry-After.
    api_requests_per_second: float = 20.0
    api_burst: int = 100
    # Tracking (mailer_core.tracking): the HMAC secret of pixel and click tokens and the public
    # base URL of the track routes. Without both, emails go out untracked.
    tracking_secret_id: str = ""  # its Secrets Manager ARN, as for the client secret
    tracking_secret: str = ""
    public_base_url: str = ""
    # Public web pages (mailer_core.pages): served on a page's own domain only once that domain
    # is mapped to the HTTP API (docs/pages.md); until then behind the public base URL.
    pages_on_custom_domains: bool = False

    @property
    def token_audience(self) -> str:
        """The `aud` of the widget's token: scheme and host of the redirect URI."""
        parts = urlsplit(self.kommo_redirect_uri)
        return f"{parts.scheme}://{parts.netloc}" if parts.netloc else ""

    def with_changes(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def from_environment(env: dict[str, str] | None = None) -> Settings:
    e = dict(os.environ if env is None else env)
    defaults = Settings()

    def get(name: str, default: str) -> str:
        return e.get(name, default) or default

    return Settings(
        accounts_table=get("MAILER_ACCOUNTS_TABLE", defaults.accounts_table),
        mailboxes_table=get("MAILER_MAILBOXES_TABLE", defaults.mailboxes_table),
        messages_table=get("MAILER_MESSAGES_TABLE", defaults.messages_table),
        rate_limits_table=get("MAILER_RATE_LIMITS_TABLE", defaults.rate_limits_table),
        uploads_table=get("MAILER_UPLOADS_TABLE", defaults.uploads_table),
        suppressions_table=get("MAILER_SUPPRESSIONS_TABLE", defaults.suppressions_table),
        kommo_installs_table=get("MAILER_KOMMO_INSTALLS_TABLE", defaults.kommo_installs_table),
        templates_table=get("MAILER_TEMPLATES_TABLE", defaults.templates_table),
        triggers_table=get("MAILER_TRIGGERS_TABLE", defaults.triggers_table),
        links_table=get("MAILER_LINKS_TABLE", defaults.links_table),
        web_pages_table=get("MAILER_WEB_PAGES_TABLE", defaults.web_pages_table),
        automation_table=get("MAILER_AUTOMATION_TABLE", defaults.automation_table),
        template_stats_table=get("MAILER_TEMPLATE_STATS_TABLE", defaults.template_stats_table),
        campaigns_table=get("MAILER_CAMPAIGNS_TABLE", defaults.campaigns_table),
        target_lists_table=get("MAILER_TARGET_LISTS_TABLE", defaults.target_lists_table),
        target_list_members_table=get("MAILER_TARGET_LIST_MEMBERS_TABLE", defaults.target_list_members_table),
        campaign_queue_url=get("MAILER_CAMPAIGN_QUEUE_URL", ""),
        actions_queue_url=get("MAILER_ACTIONS_QUEUE_URL", ""),
        pipeline_queue_url=get("MAILER_PIPELINE_QUEUE_URL", ""),
        send_queue_url=get("MAILER_SEND_QUEUE_URL", ""),
        bulk_queue_url=get("MAILER_BULK_QUEUE_URL", ""),
        kommo_auth_queue_url=get("MAILER_KOMMO_AUTH_QUEUE_URL", ""),
        bounce_poll_queue_url=get("MAILER_BOUNCE_POLL_QUEUE_URL", ""),
        kms_key_id=get("MAILER_KMS_KEY_ID", ""),
        bucket=get("MAILER_BUCKET", ""),
        schedule_group=get("MAILER_SCHEDULE_GROUP", defaults.schedule_group),
        scheduler_role_arn=get("MAILER_SCHEDULER_ROLE_ARN", ""),
        timers_function_arn=get("MAILER_TIMERS_FUNCTION_ARN", ""),
        kommo_client_id=get("KOMMO_CLIENT_ID", ""),
        kommo_client_secret_id=get("MAILER_KOMMO_CLIENT_SECRET_ID", ""),
        kommo_client_secret=get("KOMMO_CLIENT_SECRET", ""),
        kommo_redirect_uri=get("KOMMO_REDIRECT_URI", ""),
        kommo_base_url=get("MAILER_KOMMO_BASE_URL", defaults.kommo_base_url),
        kommo_requests_per_second=float(get("MAILER_KOMMO_REQUESTS_PER_SECOND", "7")),
        kommo_egress_key=get("MAILER_KOMMO_EGRESS_KEY", defaults.kommo_egress_key).strip(),
        kommo_egress_requests_per_second=(
            float(e["MAILER_KOMMO_EGRESS_REQUESTS_PER_SECOND"])
            if e.get("MAILER_KOMMO_EGRESS_REQUESTS_PER_SECOND")
            else None
        ),
        kommo_max_rate_wait_seconds=float(get("MAILER_KOMMO_MAX_RATE_WAIT_SECONDS", "10")),
        kommo_refresh_margin_seconds=float(get("MAILER_KOMMO_REFRESH_MARGIN_SECONDS", "3600")),
        kommo_block_cooloff_seconds=float(get("MAILER_KOMMO_BLOCK_COOLOFF_SECONDS", "900")),
        allow_plaintext_smtp=_flag(e.get("MAILER_ALLOW_PLAINTEXT_SMTP")),
        allow_loopback_mailboxes=_flag(e.get("MAILER_ALLOW_LOOPBACK_MAILBOXES")),
        smtp_ca_file=get("MAILER_SMTP_CA_FILE", ""),
        smtp_timeout_seconds=float(get("MAILER_SMTP_TIMEOUT_SECONDS", "30")),
        mailbox_check_timeout_seconds=float(get("MAILER_MAILBOX_CHECK_TIMEOUT_SECONDS", "8")),
        max_rate_wait_seconds=float(get("MAILER_MAX_RATE_WAIT_SECONDS", "2")),
        max_send_attempts=int(get("MAILER_MAX_SEND_ATTEMPTS", "5")),
        extra_cors_origins=tuple(
            o.strip() for o in get("MAILER_EXTRA_CORS_ORIGINS", "").split(",") if o.strip()
        ),
        tracking_secret_id=get("MAILER_TRACKING_SECRET_ID", ""),
        worker_share=int(get("MAILER_WORKER_SHARE", "1")),
        worker_share_lease_seconds=float(get("MAILER_WORKER_SHARE_LEASE_SECONDS", "120")),
        campaign_part_lease_seconds=float(get("MAILER_CAMPAIGN_PART_LEASE_SECONDS", "330")),
        api_requests_per_second=float(get("MAILER_API_REQUESTS_PER_SECOND", "20")),
        api_burst=int(get("MAILER_API_BURST", "100")),
        tracking_secret=get("MAILER_TRACKING_SECRET", ""),
        public_base_url=get("MAILER_PUBLIC_BASE_URL", "").rstrip("/"),
        pages_on_custom_domains=_flag(get("MAILER_PAGES_ON_CUSTOM_DOMAINS", "")),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return from_environment()


def reset_settings() -> None:
    """Forget the cached settings (tests and the local stack change the environment)."""
    get_settings.cache_clear()
