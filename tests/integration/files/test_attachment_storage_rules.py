"""The bucket's lifecycle and CORS in infra/template.yaml agree with what the code tags and needs."""

from __future__ import annotations

from typing import Any

from mailer_core.adapters import s3
from mailer_core.files import uploads
from mailer_core.kommo.hosts import is_account_origin
from mailer_core.messages import compose as messages

from devstack.resources import load_template
from tests.infrastructure.sam_offline import function_roles, load_source, referenced_ids, sub_text, translate
from tests.infrastructure.template_rules import can

TEMPLATE = load_template()
BUCKET: dict[str, Any] = TEMPLATE["Resources"]["BodiesBucket"]["Properties"]


def rules_for(retention: str) -> list[dict[str, Any]]:
    return [
        rule
        for rule in BUCKET["LifecycleConfiguration"]["Rules"]
        if {"Key": s3.RETENTION_TAG, "Value": retention} in rule.get("TagFilters", [])
    ]


def test_unused_uploads_expire_as_the_upload_record_says() -> None:
    [rule] = rules_for("pending")

    assert rule["Status"] == "Enabled" and rule["Prefix"] == s3.UPLOAD_PREFIX
    assert rule["ExpirationInDays"] == s3.PENDING_DAYS
    assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] >= 1  # the bucket is versioned


def test_a_messages_files_outlive_the_furthest_send_at() -> None:
    [rule] = rules_for("message")

    assert rule["ExpirationInDays"] == s3.MESSAGE_DAYS
    # an upload may wait a day for its message, which may be scheduled a year ahead and retried
    assert s3.PENDING_DAYS + messages.MAX_SCHEDULE_AHEAD.days + 7 < s3.MESSAGE_DAYS


def test_a_templates_files_are_never_expired_by_the_lifecycle() -> None:
    assert rules_for("template") == []
    untagged = [r for r in BUCKET["LifecycleConfiguration"]["Rules"] if "TagFilters" not in r]
    assert all("ExpirationInDays" not in r for r in untagged)  # only delete markers and aborted uploads


def test_the_widget_on_a_kommo_page_may_post_files_to_the_bucket() -> None:
    [cors] = BUCKET["CorsConfiguration"]["CorsRules"]

    assert cors["AllowedMethods"] == ["POST"]
    for origin in cors["AllowedOrigins"]:
        assert is_account_origin(origin.replace("*", "mailerdemo")), origin
    assert uploads.POST_EXPIRES_SECONDS <= 3600


# -------------------------------------------------------------------- who may touch uploads


def _uploads_object(expr: Any) -> bool:
    text = sub_text(expr)
    return "BodiesBucket" in referenced_ids(expr) and (text.endswith("/uploads/*") or text.endswith("}/*"))


def test_only_the_api_writes_uploads_and_the_sender_reads_exact_versions() -> None:
    translated = translate(load_source())
    roles = function_roles(translated)

    writers = {fn for fn, role in roles.items() if can(translated, role, "s3:PutObject", _uploads_object)}
    assert writers == {"ApiFunction"}  # presigned POSTs carry the api role's right
    api = roles["ApiFunction"]
    for action in ("s3:GetObject", "s3:PutObjectTagging", "s3:PutObjectVersionTagging"):
        assert can(translated, api, action, _uploads_object), action
    for action in ("s3:GetObject", "s3:GetObjectVersion"):
        assert can(translated, roles["SendFunction"], action, _uploads_object), action
    assert not can(translated, roles["SendFunction"], "s3:PutObjectTagging", _uploads_object)
