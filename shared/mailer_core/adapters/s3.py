"""S3: the only module of Mailer that talks to the bucket.

The bucket holds three kinds of objects:

- `bodies/{account}/{message}.html`: HTML bodies above `INLINE_LIMIT`, because DynamoDB
  items stop at 400 KB;
- `uploads/{account}/{upload}/{name}`: files the widget uploads straight to S3 through a
  presigned POST (API Gateway takes at most 10 MB and answers within 29 s, so files never
  pass through the API);
- `bodies/{account}/campaigns/{campaign}/…`: a campaign's frozen body (`body.html`) and each
  package of its audience as read (`{n}.json`: recipients and their CRM data), so a package
  is expanded from the same recipients however often it is retried, and its emails are
  rendered without reading Kommo again;
- nothing else: attachments by link are downloaded at send time and never stored.

Every upload carries the tag `mailer-retention`, which the bucket's lifecycle rules read
(infra/template.yaml): `pending` when uploaded (the presigned POST's policy demands the tag),
expired after `PENDING_DAYS`; `message` once a message uses it, expired after
`MESSAGE_DAYS` (longer than the furthest `send_at` a message may have); `template` once a
template uses it, never expired by the lifecycle (the template's owner removes it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, BinaryIO, Literal, cast

from botocore.exceptions import BotoCoreError, ClientError

from mailer_core.adapters import aws
from mailer_core.base.config import get_settings

INLINE_LIMIT = 100 * 1024

Retention = Literal["pending", "message", "template"]
RETENTION_TAG = "mailer-retention"
RETENTION_ORDER: tuple[Retention, ...] = ("pending", "message", "template")
UPLOAD_PREFIX = "uploads/"
PENDING_DAYS = 1
MESSAGE_DAYS = 400


class ObjectMissing(Exception):
    """The object is not (or no longer) in the bucket."""


class ObjectChanged(Exception):
    """The object was replaced after it was checked (another version, another ETag)."""


class StorageUnavailable(Exception):
    """S3 failed in a way a later attempt may not (throttling, 5xx, network)."""


# ------------------------------------------------------------------ bodies


def body_key(account_id: int, message_id: str) -> str:
    return f"bodies/{account_id}/{message_id}.html"


def put_html(account_id: int, message_id: str, html: str) -> str:
    key = body_key(account_id, message_id)
    aws.client("s3").put_object(
        Bucket=get_settings().bucket,
        Key=key,
        Body=html.encode("utf-8"),
        ContentType="text/html; charset=utf-8",
    )
    return key


def get_html(key: str) -> str:
    obj = aws.client("s3").get_object(Bucket=get_settings().bucket, Key=key)
    return bytes(obj["Body"].read()).decode("utf-8")


def campaign_object_key(account_id: int, campaign_id: str, name: str) -> str:
    return f"bodies/{account_id}/campaigns/{campaign_id}/{name}"


def presign_download(key: str, filename: str, content_type: str, *, expires_in: int = 300) -> str:
    """A short-lived GET URL of a stored file, saved under its display name."""
    from urllib.parse import quote  # cold start: only the download route needs it

    return str(
        aws.client("s3").generate_presigned_url(
            "get_object",
            Params={
                "Bucket": get_settings().bucket,
                "Key": key,
                "ResponseContentDisposition": f"attachment; filename*=UTF-8''{quote(filename)}",
                "ResponseContentType": content_type,
            },
            ExpiresIn=expires_in,
        )
    )


def sent_body_key(account_id: int, message_id: str) -> str:
    """A sent email's subject, HTML and text as they went out (JSON; docs/letters.md)."""
    return f"bodies/{account_id}/sent/{message_id}.json"


def put_text(key: str, text: str, content_type: str) -> None:
    aws.client("s3").put_object(
        Bucket=get_settings().bucket, Key=key, Body=text.encode("utf-8"), ContentType=content_type
    )


def get_text_if_any(key: str) -> str | None:
    """The object's text, or None when there is no such object."""
    try:
        obj = aws.client("s3").get_object(Bucket=get_settings().bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    return bytes(obj["Body"].read()).decode("utf-8")


# ------------------------------------------------------------------ uploads


def upload_key(account_id: int, upload_id: str, key_name: str) -> str:
    return f"{UPLOAD_PREFIX}{account_id}/{upload_id}/{key_name}"


def _tagging(retention: Retention) -> str:
    return (
        f"<Tagging><TagSet><Tag><Key>{RETENTION_TAG}</Key><Value>{retention}</Value></Tag></TagSet></Tagging>"
    )


@dataclass(frozen=True)
class PresignedPost:
    """Where and how the browser uploads: POST `url` as multipart/form-data with `fields`, file last."""

    url: str
    fields: dict[str, str]
    expires_at: datetime


def presign_upload(
    key: str, *, content_type: str, max_bytes: int, now: datetime, expires_in: int = 900
) -> PresignedPost:
    """A presigned POST for exactly `key`: S3 itself refuses a file above `max_bytes`,
    another content type, or a form without the `pending` retention tag."""
    tagging = _tagging("pending")
    fields = {"Content-Type": content_type, "tagging": tagging}
    conditions: list[Any] = [
        {"Content-Type": content_type},
        {"tagging": tagging},
        ["content-length-range", 0, max_bytes],
    ]
    post = aws.client("s3").generate_presigned_post(
        Bucket=get_settings().bucket, Key=key, Fields=fields, Conditions=conditions, ExpiresIn=expires_in
    )
    return PresignedPost(
        url=str(post["url"]),
        fields={str(k): str(v) for k, v in post["fields"].items()},
        expires_at=now + timedelta(seconds=expires_in),
    )


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    etag: str
    version_id: str | None


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def head(key: str) -> StoredObject | None:
    """The object's real size and identity, or None when nothing was uploaded there."""
    try:
        meta = aws.client("s3").head_object(Bucket=get_settings().bucket, Key=key)
    except ClientError as error:
        if _code(error) in ("404", "NoSuchKey", "NotFound") or _status(error) == 404:
            return None
        raise
    version = meta.get("VersionId")
    return StoredObject(
        key=key,
        size=int(meta["ContentLength"]),
        etag=str(meta.get("ETag", "")),
        version_id=str(version) if version and version != "null" else None,
    )


def set_retention(key: str, retention: Retention, *, version_id: str | None = None) -> None:
    """Tag the object (that exact version when given) for the lifecycle rule of `retention`."""
    kwargs: dict[str, Any] = {
        "Bucket": get_settings().bucket,
        "Key": key,
        "Tagging": {"TagSet": [{"Key": RETENTION_TAG, "Value": retention}]},
    }
    if version_id:
        kwargs["VersionId"] = version_id
    aws.client("s3").put_object_tagging(**kwargs)


def open_object(key: str, *, etag: str = "", version_id: str | None = None) -> BinaryIO:
    """A stream of the object's bytes, exactly the version checked when it was attached.

    Raises ObjectMissing (expired or deleted), ObjectChanged (replaced since), or
    StorageUnavailable (S3 failed; a later attempt may work).
    """
    kwargs: dict[str, Any] = {"Bucket": get_settings().bucket, "Key": key}
    if version_id:
        kwargs["VersionId"] = version_id
    elif etag:
        kwargs["IfMatch"] = etag
    try:
        return cast(BinaryIO, aws.client("s3").get_object(**kwargs)["Body"])
    except ClientError as error:
        code, status = _code(error), _status(error)
        if code in ("NoSuchKey", "NoSuchVersion", "404") or status == 404:
            raise ObjectMissing(key) from None
        if code == "PreconditionFailed" or status == 412:
            raise ObjectChanged(key) from None
        if status >= 500 or code in ("SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable"):
            raise StorageUnavailable(f"{code or status}") from None
        raise
    except (BotoCoreError, OSError) as error:  # connection refused or reset, timeouts
        raise StorageUnavailable(str(error) or type(error).__name__) from None
