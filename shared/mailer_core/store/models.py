"""PynamoDB models: one table per aggregate, every key starts with the Kommo account.

Table names come from the settings when a model is first used (not at import), so the same
classes serve Lambda, the local stack and the tests. Key schemas must match
infra/template.yaml; a test compares them.
"""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from mailer_core.adapters import aws
from mailer_core.base.config import get_settings


class _TableName:
    """A descriptor that reads a table name from the settings at the time of use."""

    def __init__(self, setting: str) -> None:
        self.setting = setting

    def __get__(self, obj: object, owner: type | None = None) -> str:
        return str(getattr(get_settings(), self.setting))


class AccountModel(Model):
    """A Kommo account that installed Mailer."""

    class Meta:
        table_name = _TableName("accounts_table")

    account_id = NumberAttribute(hash_key=True)
    subdomain = UnicodeAttribute()
    status = UnicodeAttribute(default="active")
    # KMS ciphertext (base64) of the Kommo API access token.
    kommo_token_ciphertext = UnicodeAttribute(null=True)
    installed_at = UTCDateTimeAttribute(null=True)
    # The Kommo connection (mailer_core.kommo_hooks.install, kommo_limits): the account's host domain
    # (kommo.com, amocrm.ru …), the rotating refresh token (KMS ciphertext), when the access
    # token expires (epoch s), `token_version` (+1 on every store: writes are guarded by it),
    # the refresh lease, and why/until when Kommo blocked it (status "blocked"/"disconnected").
    kommo_domain = UnicodeAttribute(null=True)
    kommo_refresh_token_ciphertext = UnicodeAttribute(null=True)
    token_expires_at = NumberAttribute(null=True)
    token_version = NumberAttribute(null=True)
    refresh_lease_owner = UnicodeAttribute(null=True)
    refresh_lease_until = NumberAttribute(null=True)
    connected_at = UTCDateTimeAttribute(null=True)
    blocked_until = NumberAttribute(null=True)
    status_changed_at = UTCDateTimeAttribute(null=True)
    status_detail = UnicodeAttribute(null=True)
    # Machine opens and clicks (mailer_core.tracking.machine_traffic) are told apart unless this is False.
    filter_machine_traffic = BooleanAttribute(null=True)
    # The digital pipeline action's secret (mailer_core.accounts.pipeline_secret): only its SHA-256
    # (hex) is kept, compared in constant time by the webhook; `dp_secret` is the plain secret
    # of accounts from before, replaced by its hash on first use; when it was last rotated.
    dp_secret_hash = UnicodeAttribute(null=True)
    dp_secret = UnicodeAttribute(null=True)
    dp_secret_rotated_at = UTCDateTimeAttribute(null=True)
    dp_secret_version = NumberAttribute(null=True)  # the derived secret's version (accounts.pipeline_secret)
    # Widget settings (mailer_core.accounts.account_settings; None = the default): who may use Mailer
    # (None or empty: every user of the account), Mailer administrators besides Kommo's, the
    # defaults of new mailboxes, of the open pixel, and the automatic emails' daily cap.
    allowed_user_ids = ListAttribute(of=NumberAttribute, null=True)
    admin_user_ids = ListAttribute(of=NumberAttribute, null=True)
    default_rate_per_second = NumberAttribute(null=True)
    default_daily_cap = NumberAttribute(null=True)
    track_opens = BooleanAttribute(null=True)
    auto_emails_per_entity_per_day = NumberAttribute(null=True)
    complaints_run_failed = BooleanAttribute(null=True)
    # Opt-out (docs/opt-out.md): the campaign footer (None: on), the tag and the note on the
    # contact of a person who unsubscribes (None: none).
    opt_out_footer = BooleanAttribute(null=True)
    opt_out_tag = UnicodeAttribute(null=True)
    opt_out_note = BooleanAttribute(null=True)
    campaign_bounce_warning = NumberAttribute(null=True)
    campaign_bounce_interrupt = NumberAttribute(null=True)
    campaign_complaint_warning = NumberAttribute(null=True)
    campaign_complaint_interrupt = NumberAttribute(null=True)
    settings_updated_at = UTCDateTimeAttribute(null=True)
    settings_updated_by = NumberAttribute(null=True)
    # When the account was last disabled or uninstalled (mailer_core.kommo_hooks.uninstall): a
    # message composed before it never goes out, even after a reinstall.
    disabled_at = UTCDateTimeAttribute(null=True)
    # The compose window's remembered choices, by Kommo user id as text: {"501":
    # {"track_downloads": true}} (accounts.preferences, docs/letters.md#attachment-downloads).
    compose_preferences = MapAttribute[str, Any](null=True)


class KommoInstallModel(Model):
    """One install redirect from Kommo, keyed by the SHA-256 of its authorization code.

    The code itself travels only in the SQS message (encrypted at rest); this item makes a
    repeated redirect a no-op and carries the exchange's progress: pending → exchanging →
    exchanged (tokens kept here, KMS-encrypted, until the account is stored) → done, or failed.
    """

    class Meta:
        table_name = _TableName("kommo_installs_table")

    code_hash = UnicodeAttribute(hash_key=True)
    subdomain = UnicodeAttribute()
    domain = UnicodeAttribute()
    state = UnicodeAttribute()
    created_at = NumberAttribute()
    claim_until = NumberAttribute(null=True)
    access_token_ciphertext = UnicodeAttribute(null=True)
    refresh_token_ciphertext = UnicodeAttribute(null=True)
    token_expires_at = NumberAttribute(null=True)
    account_id = NumberAttribute(null=True)
    error = UnicodeAttribute(null=True)
    expires_at = TTLAttribute()


class MailboxModel(Model):
    """A user's SMTP mailbox. The password is KMS ciphertext and never leaves the core."""

    class Meta:
        table_name = _TableName("mailboxes_table")

    account_id = NumberAttribute(hash_key=True)
    mailbox_id = UnicodeAttribute(range_key=True)
    user_id = NumberAttribute()
    sender_name = UnicodeAttribute(default="")
    sender_email = UnicodeAttribute()
    smtp_host = UnicodeAttribute()
    smtp_port = NumberAttribute()
    smtp_security = UnicodeAttribute()
    smtp_login = UnicodeAttribute()
    password_ciphertext = UnicodeAttribute()
    rate_per_second = NumberAttribute(default=1)
    daily_cap = NumberAttribute(default=2000)
    is_default = BooleanAttribute(default=False)
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()
    # The manager's signature (HTML, may hold variables) and phone, for templates (rendering).
    signature = UnicodeAttribute(null=True)
    sender_phone = UnicodeAttribute(null=True)
    # IMAP (mailer_core.adapters.imap): Sent folder and bounces. No host: SMTP only. The SMTP password
    # serves IMAP too unless an IMAP password of its own is stored (KMS ciphertext).
    imap_host = UnicodeAttribute(null=True)
    imap_port = NumberAttribute(null=True)
    imap_security = UnicodeAttribute(null=True)
    imap_login = UnicodeAttribute(null=True)
    imap_password_ciphertext = UnicodeAttribute(null=True)
    append_to_sent = BooleanAttribute(default=True)  # False where the provider files SMTP mail itself
    envelope_token = BooleanAttribute(default=False)  # MAIL FROM local+mlr-<message id>@domain
    # The traffic light (mailer_core.mailboxes.check): green, gray, red or unchecked.
    status = UnicodeAttribute(default="unchecked")
    last_check_at = UTCDateTimeAttribute(null=True)
    last_check = MapAttribute[str, Any](null=True)
    sent_folder = UnicodeAttribute(null=True)  # readable name, remembered after it was found
    last_append_error = UnicodeAttribute(null=True)
    last_append_error_at = UTCDateTimeAttribute(null=True)
    # Bounce polling's place in the inbox (mailer_core.bounces.poller).
    imap_uidvalidity = NumberAttribute(null=True)
    imap_last_uid = NumberAttribute(null=True)
    imap_polled_at = UTCDateTimeAttribute(null=True)
    # Failed polls in a row, the last one's words, when the next poll may start (back-off,
    # quarantine after many), and the lease of the poll job on its way (epoch seconds).
    imap_poll_failures = NumberAttribute(null=True)
    imap_poll_error = UnicodeAttribute(null=True)
    imap_next_poll_at = UTCDateTimeAttribute(null=True)
    imap_poll_lease_until = NumberAttribute(null=True)
    # The latest refusal for the sender's sake (mailer_core.mailboxes.health): DMARC, block lists, spam.
    delivery_problem = MapAttribute[str, Any](null=True)
    delivery_problem_at = UTCDateTimeAttribute(null=True)


class HistoryEntry(MapAttribute[str, Any]):
    at = UTCDateTimeAttribute()
    event = UnicodeAttribute()
    detail = UnicodeAttribute(null=True)


class BounceEntry(MapAttribute[str, Any]):
    """One recipient's delivery report: permanent (given up) or temporary (delayed), and why."""

    at = UTCDateTimeAttribute()
    address = UnicodeAttribute()
    permanent = BooleanAttribute()
    reason = UnicodeAttribute(null=True)  # mailer_core.bounces.classify.Reason
    status = UnicodeAttribute(null=True)  # the enhanced status code, e.g. "5.1.1"
    diagnostic = UnicodeAttribute(null=True)  # the remote server's words
    reported_by = UnicodeAttribute(null=True)  # the reporting MTA


class AttachmentAttribute(MapAttribute[str, Any]):
    """An uploaded file a message or a template attaches: the S3 object exactly as checked."""

    upload_id = UnicodeAttribute()
    s3_key = UnicodeAttribute()
    filename = UnicodeAttribute()  # the display name (Cyrillic allowed), already made safe
    content_type = UnicodeAttribute()
    size = NumberAttribute()  # S3's size when attached
    etag = UnicodeAttribute(null=True)
    version_id = UnicodeAttribute(null=True)


class ByStatusIndex(GlobalSecondaryIndex["MessageModel"]):
    class Meta:
        index_name = "by_status"
        projection = AllProjection()

    status_key = UnicodeAttribute(hash_key=True)
    message_id = UnicodeAttribute(range_key=True)


class ByCampaignIndex(GlobalSecondaryIndex["MessageModel"]):
    class Meta:
        index_name = "by_campaign"
        projection = AllProjection()

    campaign_key = UnicodeAttribute(hash_key=True)
    message_id = UnicodeAttribute(range_key=True)


class ByEntityIndex(GlobalSecondaryIndex["MessageModel"]):
    class Meta:
        index_name = "by_entity"
        projection = AllProjection()

    entity_key = UnicodeAttribute(hash_key=True)
    message_id = UnicodeAttribute(range_key=True)


def entity_key(account_id: int, entity: tuple[str, int] | None) -> str | None:
    """The by_entity index's key of a message about a Kommo entity ("leads", 123): one card's
    emails; None (not in the index) for a message about no entity."""
    return f"{account_id}#{entity[0]}#{entity[1]}" if entity else None


class MessageModel(Model):
    """One email and its whole life: status, attempts, errors and history."""

    class Meta:
        table_name = _TableName("messages_table")

    account_id = NumberAttribute(hash_key=True)
    message_id = UnicodeAttribute(range_key=True)
    status = UnicodeAttribute()
    # "{account_id}#{status}": the by_status index lists one account's messages by status.
    status_key = UnicodeAttribute()
    by_status = ByStatusIndex()
    user_id = NumberAttribute()
    mailbox_id = UnicodeAttribute()
    lane = UnicodeAttribute(default="priority")
    to = ListAttribute(of=UnicodeAttribute)
    cc = ListAttribute(of=UnicodeAttribute, default=list)
    bcc = ListAttribute(of=UnicodeAttribute, default=list)
    entity_type = UnicodeAttribute(null=True)
    entity_id = NumberAttribute(null=True)
    # "{account_id}#{entity_type}#{entity_id}" (entity_key()): the by_entity index lists one
    # card's emails, newest first (GET /v1/messages?entity_type=&entity_id=).
    entity_key = UnicodeAttribute(null=True)
    by_entity = ByEntityIndex()
    subject = UnicodeAttribute(default="")
    # The HTML body inline, or the S3 key where a large body is kept.
    html = UnicodeAttribute(null=True)
    html_s3_key = UnicodeAttribute(null=True)
    header_message_id = UnicodeAttribute()
    send_at = UTCDateTimeAttribute(null=True)
    schedule_name = UnicodeAttribute(null=True)
    attempts = NumberAttribute(default=0)
    last_error = UnicodeAttribute(null=True)
    claim_expires_at = UTCDateTimeAttribute(null=True)
    # Why a queued message waits and when it is tried next (mailer_core.sending: the mailbox's
    # rate, its daily cap, a provider's hold), written only when its job went back to the queue
    # with a delay; the claim removes them.
    waiting_reason = UnicodeAttribute(null=True)
    waiting_until = UTCDateTimeAttribute(null=True)
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()
    sent_at = UTCDateTimeAttribute(null=True)
    history = ListAttribute(of=HistoryEntry, default=list)
    # Delivery reports read back from the mailbox (mailer_core.bounces.reports); `bounce_keys` makes
    # recording each report once a conditional write.
    bounces = ListAttribute(of=BounceEntry, null=True)
    bounce_keys = UnicodeSetAttribute(null=True)
    # Uploaded files (mailer_core.files.attachments; the bytes stay in S3) and links downloaded
    # at send time.
    attachments = ListAttribute(of=AttachmentAttribute, default=list)
    attachment_links = ListAttribute(of=UnicodeAttribute, default=list)
    # Templates (mailer_core.templates.api, personalization): subject and html above are template
    # sources rendered at send time with fresh CRM data; the template they came from, if any.
    template_id = UnicodeAttribute(null=True)
    locale = UnicodeAttribute(null=True)
    timezone = UnicodeAttribute(null=True)
    disable_signature = BooleanAttribute(null=True)
    # Tracking (mailer_core.tracking): the pixel is added unless track_opens is False; people's
    # opens and machines' (machine_traffic) apart; the distinct link targets stored at send
    # time and their click counters (same index), people and machines apart.
    track_opens = BooleanAttribute(null=True)
    opens = NumberAttribute(null=True)
    machine_opens = NumberAttribute(null=True)
    first_open_at = UTCDateTimeAttribute(null=True)
    # Answers read from the mailbox's inbox (mailer_core.bounces.replies); automatic replies do not count.
    first_reply_at = UTCDateTimeAttribute(null=True)
    replies = NumberAttribute(null=True)
    last_open_at = UTCDateTimeAttribute(null=True)
    tracked_links = ListAttribute(of=UnicodeAttribute, null=True)
    link_clicks = ListAttribute(of=NumberAttribute, null=True)
    machine_link_clicks = ListAttribute(of=NumberAttribute, null=True)
    # Clicks in all (people, machines): they cap the clicks listed in `history` (tracking);
    # the per-template counters this message is in already (template_stats: sent, failed,
    # bounced, opened), each added once: a conditional ADD to this set comes first.
    clicks_total = NumberAttribute(null=True)
    machine_clicks_total = NumberAttribute(null=True)
    stats_counted = UnicodeSetAttribute(null=True)
    # A template's email carries its template id here from compose until its first machine
    # open, which removes it and reads it back in the same UpdateItem (no read to find the
    # template whose machine_opened counter it adds to).
    machine_open_template = UnicodeAttribute(null=True)
    # Automation (mailer_core.automation.runner): who composed it (manual, pipeline, salesbot,
    # trigger), the trigger ids chosen for each event, frozen when the message was queued
    # ({"sent": [...], "opened": [...], "not_opened": [...], "failed": [...]}), how long
    # "not opened" waits (seconds) and the name of its one-time schedule; for an email a
    # trigger sent, the message whose event sent it and how many automatic steps lie behind it.
    origin = UnicodeAttribute(null=True)
    triggers = MapAttribute[str, Any](null=True)
    not_opened_after = NumberAttribute(null=True)
    not_opened_schedule = UnicodeAttribute(null=True)
    parent_message_id = UnicodeAttribute(null=True)
    chain_depth = NumberAttribute(null=True)
    sent_subject = UnicodeAttribute(null=True)  # the subject as rendered and sent
    # Campaigns (mailer_core.campaigns): the campaign this email is one recipient of, and
    # "{account_id}#{campaign_id}", the key of the by_campaign index (the campaign's log);
    # the S3 key of the CRM data its package read (rendered without reading Kommo again).
    campaign_id = UnicodeAttribute(null=True)
    campaign_key = UnicodeAttribute(null=True)
    by_campaign = ByCampaignIndex()
    crm_snapshot = UnicodeAttribute(null=True)
    # When its recipient unsubscribed through its link (docs/opt-out.md): set once, by a
    # conditional write, which is what calls message_events.on_message_opted_out once.
    opted_out_at = UTCDateTimeAttribute(null=True)
    campaign_slot = UnicodeAttribute(null=True)  # "{package}:{offset}": the part that composed it
    # Letters (docs/letters.md): a draft's compose body as JSON (without its html, kept in
    # `html`/`html_s3_key` as for any message) while its status is "draft"; an answer's or a
    # forward's threading headers (In-Reply-To, References: Message-IDs in angle brackets).
    draft_request = UnicodeAttribute(null=True)
    in_reply_to = UnicodeAttribute(null=True)
    references = ListAttribute(of=UnicodeAttribute, null=True)
    # Attachment downloads (tracking.downloads): uploaded files go as signed download links;
    # each file's first download by a person counted once ("download#<index>" in the set).
    track_downloads = BooleanAttribute(null=True)
    downloads = NumberAttribute(null=True)
    download_keys = UnicodeSetAttribute(null=True)


class TemplateModel(Model):
    """A saved email (mailer_core.templates.api): recipients, subject and body with variables."""

    class Meta:
        table_name = _TableName("templates_table")

    account_id = NumberAttribute(hash_key=True)
    template_id = UnicodeAttribute(range_key=True)  # a ULID
    name = UnicodeAttribute()
    user_id = NumberAttribute()  # the owner
    is_public = BooleanAttribute(default=False)
    # Kommo users besides the owner who see and use it (docs/letters.md#template-availability)
    shared_with = ListAttribute(of=NumberAttribute, null=True)
    # Attachments go as signed download links whose first download runs "downloaded" triggers.
    track_downloads = BooleanAttribute(null=True)
    disable_signature = BooleanAttribute(default=False)
    to_client = UnicodeAttribute(default="main")  # main, all or none: the entity's contacts
    to = ListAttribute(of=UnicodeAttribute, default=list)  # addresses, may hold variables
    cc = ListAttribute(of=UnicodeAttribute, default=list)
    bcc = ListAttribute(of=UnicodeAttribute, default=list)
    subject = UnicodeAttribute(default="")
    # The HTML inline, or the S3 key of a large one (mailer_core.adapters.s3).
    html = UnicodeAttribute(null=True)
    html_s3_key = UnicodeAttribute(null=True)
    locale = UnicodeAttribute(null=True)
    timezone = UnicodeAttribute(null=True)
    attachments = ListAttribute(of=AttachmentAttribute, default=list)
    attachment_links = ListAttribute(of=UnicodeAttribute, default=list)
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()
    # The open pixel goes into emails of this template unless False (mailer_core.tracking).
    track_opens = BooleanAttribute(null=True)
    # Automation: trigger ids per event (as on MessageModel.triggers), the not-opened wait
    # (seconds), and, for a chain the user marked as intentionally repeating, how many times
    # it may send this template to one entity (mailer_core.triggers.loops).
    triggers = MapAttribute[str, Any](null=True)
    not_opened_after = NumberAttribute(null=True)
    repeat_max = NumberAttribute(null=True)
    link_ids = ListAttribute(of=NumberAttribute, null=True)  # the {triggerlink:N} its subject and body use


class SuppressionEvent(MapAttribute[str, Any]):
    """A line of a suppression's history: a report, the suppression itself, a lift."""

    at = UTCDateTimeAttribute()
    what = UnicodeAttribute()  # reported, suppressed, lifted
    reason = UnicodeAttribute(null=True)
    status = UnicodeAttribute(null=True)
    words = UnicodeAttribute(null=True)  # the report's words
    message_id = UnicodeAttribute(null=True)
    user_id = NumberAttribute(null=True)  # who lifted it


class SuppressionModel(Model):
    """An address of the account's suppression list, with its history (mailer_core.messages.suppressions).

    `state`: suppressed (never written to), watching (reports counted, not yet suppressed:
    a full mailbox) or lifted by an administrator; a row without it was written suppressed.
    """

    class Meta:
        table_name = _TableName("suppressions_table")

    account_id = NumberAttribute(hash_key=True)
    address = UnicodeAttribute(range_key=True)  # lower case
    reason = UnicodeAttribute()  # the reason that suppressed it (or is counted), e.g. "user_unknown"
    state = UnicodeAttribute(null=True)
    status = UnicodeAttribute(null=True)  # the last report's, e.g. "5.1.1"
    diagnostic = UnicodeAttribute(null=True)  # the last report's words
    message_id = UnicodeAttribute(null=True)  # the message of the last report
    mailbox_id = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute()  # the first report
    last_at = UTCDateTimeAttribute(null=True)  # the last report
    report_count = NumberAttribute(null=True)  # reports received
    suppressed_at = UTCDateTimeAttribute(null=True)
    lifted_at = UTCDateTimeAttribute(null=True)
    lifted_by = NumberAttribute(null=True)
    repeats = ListAttribute(of=UnicodeAttribute, null=True)  # when each counted report came (ISO 8601)
    report_keys = UnicodeSetAttribute(null=True)  # each report counted once
    events = ListAttribute(of=SuppressionEvent, null=True)


class UploadModel(Model):
    """A file uploaded (or about to be) to S3 through a presigned POST (mailer_core.files.uploads).

    `retention` follows the object's S3 tag: pending (expires with `expires_at`), message
    (kept as long as a scheduled message may wait) or template (no expiry).
    """

    class Meta:
        table_name = _TableName("uploads_table")

    account_id = NumberAttribute(hash_key=True)
    upload_id = UnicodeAttribute(range_key=True)
    user_id = NumberAttribute()
    purpose = UnicodeAttribute()  # attachment or inline_image
    filename = UnicodeAttribute()
    content_type = UnicodeAttribute()
    declared_size = NumberAttribute()
    s3_key = UnicodeAttribute()
    retention = UnicodeAttribute(default="pending")
    created_at = UTCDateTimeAttribute()
    expires_at = TTLAttribute(null=True)


class TriggerModel(Model):
    """A CRM action users wire to email events and links (mailer_core.triggers.api)."""

    class Meta:
        table_name = _TableName("triggers_table")

    account_id = NumberAttribute(hash_key=True)
    trigger_id = UnicodeAttribute(range_key=True)  # a ULID
    name = UnicodeAttribute()
    type = UnicodeAttribute()  # task, note, stage, field, email, lead, tags
    params = MapAttribute[str, Any](default=dict)  # the type's settings
    delay_seconds = NumberAttribute(default=0)
    user_id = NumberAttribute()  # who created it
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()


class LinkModel(Model):
    """A trigger link, used in templates as {triggerlink:N} (mailer_core.triggers.links_api)."""

    class Meta:
        table_name = _TableName("links_table")

    account_id = NumberAttribute(hash_key=True)
    link_id = NumberAttribute(range_key=True)  # N, numbered per account from 1
    name = UnicodeAttribute()
    once = BooleanAttribute(default=False)
    target = UnicodeAttribute(null=True)  # a URL, may hold variables; none: the thank-you page
    trigger_ids = ListAttribute(of=UnicodeAttribute, default=list)
    user_id = NumberAttribute()
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()


class WebPageModel(Model):
    """A public web page, used in texts as {web:N} (mailer_core.pages.settings_api); the row
    N = 0 holds the account's page domains (at most 3)."""

    class Meta:
        table_name = _TableName("web_pages_table")

    account_id = NumberAttribute(hash_key=True)
    page_id = NumberAttribute(range_key=True)  # N, numbered per account from 1001; 0: domains
    name = UnicodeAttribute(default="")
    header = UnicodeAttribute(default="")  # the browser tab's title
    title = UnicodeAttribute(default="")  # the readable tail of the URL ("index")
    html = UnicodeAttribute(default="")  # the page's template (variables, trigger links, forms)
    lifetime_days = NumberAttribute(default=30)
    cache_minutes = NumberAttribute(default=60)  # the rendered page kept this long
    domain = UnicodeAttribute(null=True)  # one of the account's page domains
    trigger_id = UnicodeAttribute(null=True)  # runs once per entity when the page opens
    metrika_id = UnicodeAttribute(null=True)  # Yandex Metrika counter number
    gtm_id = UnicodeAttribute(null=True)  # Google Tag Manager container id (GTM-XXXX)
    domains = ListAttribute(of=UnicodeAttribute, default=list)  # row 0 only
    last_number = NumberAttribute(default=1000)  # row 0 only: the last page number given
    user_id = NumberAttribute(default=0)
    created_at = UTCDateTimeAttribute(null=True)
    updated_at = UTCDateTimeAttribute(null=True)


class AutomationFactModel(Model):
    """An exactly-once fact of the automation, stored by a conditional write.

    `fact_key` says what it is: "run#<run id>" (a trigger run's claim and result),
    "once#<link>#<entity>" (a one-time link's first click), "dp#<event key>" (a pipeline event
    seen), "bot#<step key>" (a Salesbot step seen), "bottoken#<token key>" (a Salesbot token
    spent on its one step, until it expires), "day#<yyyy-mm-dd>#<template>#<entity>" (automatic
    emails sent that day), "seq#links" (the account's last link number).
    """

    class Meta:
        table_name = _TableName("automation_table")

    account_id = NumberAttribute(hash_key=True)
    fact_key = UnicodeAttribute(range_key=True)
    created_at = UTCDateTimeAttribute(null=True)
    state = UnicodeAttribute(null=True)
    tally = NumberAttribute(null=True)  # attempts of a run, emails of a day
    detail = UnicodeAttribute(null=True)
    claim_until = NumberAttribute(null=True)
    expires_at = TTLAttribute(null=True)


class TemplateStatsModel(Model):
    """Counters of the emails sent from one template (mailer_core.templates.stats_view).

    Emails, not events: each message counts at most once in sent, failed, bounced, opened
    (a person) and machine_opened. Per link, besides these attributes, the item holds
    `u_<key>` (the target), `n_<key>` (a trigger link's number), `p_<key>` and `m_<key>`
    (emails in which a person / a machine clicked it), `key` being the hex of the hash the
    click token carries; `link_keys` lists the keys (at most template_counters.MAX_LINKS).
    """

    class Meta:
        table_name = _TableName("template_stats_table")

    account_id = NumberAttribute(hash_key=True)
    template_id = UnicodeAttribute(range_key=True)
    sent = NumberAttribute(null=True)
    failed = NumberAttribute(null=True)
    bounced = NumberAttribute(null=True)
    opened = NumberAttribute(null=True)
    machine_opened = NumberAttribute(null=True)
    link_keys = UnicodeSetAttribute(null=True)
    other_people = NumberAttribute(null=True)  # clicks on links beyond MAX_LINKS
    other_machines = NumberAttribute(null=True)
    updated_at = UTCDateTimeAttribute(null=True)


class CampaignModel(Model):
    """A mass mailing (mailer_core.campaigns): what it sends, to whom, when, and how far it got.

    The audience and options are kept as given (JSON maps); `counts` holds the counters every
    writer ADDs to (recipients, queued, sent, failed, bounced, opened, clicked, opted_out,
    complained, excluded_<why>), each email at most once per counter (the message's
    `stats_counted` guard, as for templates). `package` is the next package of the audience
    to expand and `cursor` where it starts; `package_started` guards its expansion.
    """

    class Meta:
        table_name = _TableName("campaigns_table")

    account_id = NumberAttribute(hash_key=True)
    campaign_id = UnicodeAttribute(range_key=True)
    name = UnicodeAttribute()
    status = UnicodeAttribute()
    status_reason = UnicodeAttribute(null=True)
    user_id = NumberAttribute()
    template_id = UnicodeAttribute(null=True)
    subject = UnicodeAttribute(null=True)
    html = UnicodeAttribute(null=True)
    mailbox_ids = ListAttribute(of=UnicodeAttribute)
    audience = MapAttribute[str, Any]()
    options = MapAttribute[str, Any](default=dict)
    send_at = UTCDateTimeAttribute(null=True)
    schedule_name = UnicodeAttribute(null=True)
    started_at = UTCDateTimeAttribute(null=True)
    finished_at = UTCDateTimeAttribute(null=True)
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()
    version = NumberAttribute(default=1)
    package = NumberAttribute(default=0)
    offset = NumberAttribute(default=0)  # the next recipient of the package to compose
    advanced_by = UnicodeAttribute(null=True)  # the campaign job that last moved the position on
    # The part at the position is being composed by one execution (campaigns.expansion): its
    # random token, its job and until when; removed when the position moves on.
    part_lease = UnicodeAttribute(null=True)
    part_lease_job = UnicodeAttribute(null=True)
    part_lease_until = UTCDateTimeAttribute(null=True)
    cursor = UnicodeAttribute(null=True)
    next_at = UTCDateTimeAttribute(null=True)  # the pace: the next part is due then
    day = UnicodeAttribute(null=True)  # the per-day portion: the day counted and its emails
    day_count = NumberAttribute(null=True)
    # why the next part waits past its pace (`per_day`, `daily_cap`), until `next_at`
    waiting_reason = UnicodeAttribute(null=True)
    expanded = BooleanAttribute(default=False)
    counts = MapAttribute[str, Any](default=dict)
    # Per link (at most campaign_state.MAX_LINKS): `links` maps the click token's hash (hex) to
    # the target, `counts["link:<hex>"]` counts emails in which a person clicked it.
    links = MapAttribute[str, Any](default=dict)
    link_keys = UnicodeSetAttribute(null=True)
    warnings = ListAttribute(of=UnicodeAttribute, null=True)
    # A chain: the step before this one, what its recipients must not have done, and the wait.
    parent_id = UnicodeAttribute(null=True)
    chain_condition = UnicodeAttribute(null=True)
    chain_delay = NumberAttribute(null=True)


class TargetListModel(Model):
    """A saved target list (mailer_core.audiences): entities or plain addresses, and their count."""

    class Meta:
        table_name = _TableName("target_lists_table")

    account_id = NumberAttribute(hash_key=True)
    list_id = UnicodeAttribute(range_key=True)
    name = UnicodeAttribute()
    user_id = NumberAttribute()
    is_public = BooleanAttribute(default=False)
    members = NumberAttribute(default=0)
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()


class TargetListMemberModel(Model):
    """One member of a target list: `{account_id}#{list_id}` and the member's key, an address
    in lower case or `leads:123`-style for a CRM entity."""

    class Meta:
        table_name = _TableName("target_list_members_table")

    list_key = UnicodeAttribute(hash_key=True)
    member = UnicodeAttribute(range_key=True)
    address = UnicodeAttribute(null=True)
    name = UnicodeAttribute(null=True)
    entity_type = UnicodeAttribute(null=True)
    entity_id = NumberAttribute(null=True)
    added_at = UTCDateTimeAttribute()


# A campaign's Send Test email's `origin` (campaigns.send_test): it carries a campaign email's
# opt-out (tracking.unsubscribe), whose link unsubscribes no one (messages.opt_out).
CAMPAIGN_TEST_ORIGIN = "campaign test"


def target_list_key(account_id: int, list_id: str) -> str:
    """The members' hash key of a target list."""
    return f"{int(account_id)}#{list_id}"


def entity_member(entity_type: str, entity_id: int) -> str:
    """The member key of a CRM entity in a target list: `leads:123`."""
    return f"{entity_type}:{int(entity_id)}"


def plain_map(raw: Any) -> dict[str, Any]:
    """A raw MapAttribute's value (a MapAttribute, a dict or None) as a plain dict."""
    return dict(raw.as_dict() if hasattr(raw, "as_dict") else raw or {})


def event_triggers(raw: Any) -> dict[str, list[str]]:
    """The trigger ids per event of a message's or a template's `triggers`, without empty events."""
    return {str(k): [str(t) for t in v or []] for k, v in plain_map(raw).items() if v}


ALL_MODELS: tuple[type[Model], ...] = (
    AccountModel,
    AutomationFactModel,
    CampaignModel,
    KommoInstallModel,
    LinkModel,
    MailboxModel,
    MessageModel,
    SuppressionModel,
    TargetListMemberModel,
    TargetListModel,
    TemplateModel,
    TemplateStatsModel,
    TriggerModel,
    UploadModel,
    WebPageModel,
)


def reset_connections() -> None:
    """Forget every AWS client, PynamoDB's connections included (the local stack and tests switch
    endpoints)."""
    aws.reset_clients()
    for model in ALL_MODELS:
        model._connection = None
