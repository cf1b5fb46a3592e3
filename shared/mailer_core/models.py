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
    UnicodeAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from mailer_core.settings import get_settings


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


class HistoryEntry(MapAttribute[str, Any]):
    at = UTCDateTimeAttribute()
    event = UnicodeAttribute()
    detail = UnicodeAttribute(null=True)


class ByStatusIndex(GlobalSecondaryIndex["MessageModel"]):
    class Meta:
        index_name = "by_status"
        projection = AllProjection()

    status_key = UnicodeAttribute(hash_key=True)
    message_id = UnicodeAttribute(range_key=True)


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
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()
    sent_at = UTCDateTimeAttribute(null=True)
    history = ListAttribute(of=HistoryEntry, default=list)


ALL_MODELS: tuple[type[Model], ...] = (AccountModel, MailboxModel, MessageModel)
