"""Attachments of an email or a template: checked when composed, kept, read at send time.

Two kinds, as the widget's manual describes them:

- uploaded files (`attachments: [{"upload_id": …}]`), uploaded to S3 beforehand
  (`uploads.create`). `validate_attachments` checks, when a message or a template is saved,
  that each upload exists in the caller's account, that its file really arrived (S3's own
  size, not the declared one) and that together they stay within the limit: 100 MB for an
  email, 50 MB for a template (413 naming the field, the limit and the total). `claim`
  then keeps the files as long as their owner needs them (see `storage`).
- links (`attachment_links: ["https://…", "{{lead.cf_123}}"]`), downloaded at send time
  through `fetch` (the SSRF guard), within what is left of the email's 100 MB and a
  time budget. A link with a variable is checked once it is filled in, at send time.

At send time `load` turns both into `mime.Attachment`s: uploaded files are streamed from
S3 while the MIME is written (never whole in memory), downloaded files wait in temporary
files that the caller's ExitStack removes. Every problem comes out as an
`AttachmentFailure` whose `retryable` tells the send worker whether to try again later
(S3 or the link's server failing, a timeout) or to fail the message with the reason
(a file gone or replaced, a refused address, 4xx, too large).
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, BinaryIO, Literal, cast

from pynamodb.exceptions import DoesNotExist, UpdateError

from mailer_core.adapters import mime, s3, web_fetch
from mailer_core.base import limits, validation
from mailer_core.base.errors import InvalidInput
from mailer_core.files import uploads
from mailer_core.store.conditions import is_condition_failure
from mailer_core.store.models import AttachmentAttribute, UploadModel

MAX_FILES = 20
MAX_LINKS = 10
MAX_LINK_CHARS = 2048
LINKS_TIMEOUT_SECONDS = 30.0
Keeper = Literal["message", "template"]


class AttachmentFailure(Exception):
    """An attachment could not be put into the email at send time."""

    kind = "attachment"

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True)
class AttachedFile:
    """An uploaded file as a message or a template keeps it: enough to read exactly it back."""

    upload_id: str
    key: str
    filename: str
    content_type: str
    size: int
    etag: str = ""
    version_id: str | None = None

    def to_attribute(self) -> AttachmentAttribute:
        return AttachmentAttribute(
            upload_id=self.upload_id,
            s3_key=self.key,
            filename=self.filename,
            content_type=self.content_type,
            size=self.size,
            etag=self.etag or None,
            version_id=self.version_id,
        )

    @classmethod
    def from_attribute(cls, value: AttachmentAttribute) -> AttachedFile:
        return cls(
            upload_id=str(value.upload_id),
            key=str(value.s3_key),
            filename=str(value.filename),
            content_type=str(value.content_type),
            size=int(value.size),
            etag=str(value.etag or ""),
            version_id=value.version_id,
        )

    def view(self) -> dict[str, Any]:
        return {
            "upload_id": self.upload_id,
            "filename": self.filename,
            "content_type": self.content_type,
            "size": self.size,
        }


# ------------------------------------------------------------------ when saved


def validate_attachments(
    account_id: int,
    items: Any,
    *,
    limit_bytes: int,
    field: str = "attachments",
    what: str = "the attachments of an email",
    now: datetime | None = None,
) -> list[AttachedFile]:
    """The uploads `items` (`[{"upload_id": …}]`) name, checked; raises 422 or 413 naming the field.

    Templates call this with `limit_bytes=limits.TEMPLATE_ATTACHMENTS_BYTES` and
    `what="the attachments of a template"`.
    """
    if items is None:
        return []
    if not isinstance(items, list):
        raise InvalidInput('must be a list like [{"upload_id": "…"}]', field=field)
    if len(items) > MAX_FILES:
        raise InvalidInput(f"at most {MAX_FILES} files can be attached", field=field)
    files: list[AttachedFile] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        where = f"{field}[{index}]"
        if not isinstance(item, dict) or set(item) != {"upload_id"} or not isinstance(item["upload_id"], str):
            raise InvalidInput('must be an object like {"upload_id": "…"}', field=where)
        upload_id = validation.identifier(item["upload_id"], f"{where}.upload_id")
        if upload_id in seen:
            raise InvalidInput("this upload is attached twice", field=f"{where}.upload_id")
        seen.add(upload_id)
        files.append(_checked_upload(account_id, upload_id, where=f"{where}.upload_id", now=now))
    total = sum(f.size for f in files)
    if total > limit_bytes:
        raise limits.too_large(what, field=field, limit_bytes=limit_bytes, total_bytes=total)
    return files


def _checked_upload(account_id: int, upload_id: str, *, where: str, now: datetime | None) -> AttachedFile:
    try:
        upload = UploadModel.get(account_id, upload_id, consistent_read=True)
    except DoesNotExist:
        raise InvalidInput("no such upload", field=where) from None
    if upload.retention == "pending" and upload.expires_at and now and upload.expires_at <= now:
        raise InvalidInput("the upload expired; upload the file again", field=where)
    stored = s3.head(upload.s3_key)
    if stored is None:
        raise InvalidInput("the file of this upload has not arrived; upload it to the URL given", field=where)
    if stored.size > int(upload.declared_size):
        raise limits.too_large(
            f"the file {upload.filename!r} (declared {int(upload.declared_size)} bytes)",
            field=where,
            limit_bytes=int(upload.declared_size),
            total_bytes=stored.size,
        )
    return AttachedFile(
        upload_id=upload_id,
        key=upload.s3_key,
        filename=upload.filename,
        content_type=upload.content_type,
        size=stored.size,
        etag=stored.etag,
        version_id=stored.version_id,
    )


def validate_links(items: Any, *, field: str = "attachment_links") -> list[str]:
    """Links to download at send time: http(s) URLs, or text with variables filled in later."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise InvalidInput('must be a list of links like ["https://…"]', field=field)
    if len(items) > MAX_LINKS:
        raise InvalidInput(f"at most {MAX_LINKS} files can be attached by link", field=field)
    links: list[str] = []
    for index, item in enumerate(items):
        where = f"{field}[{index}]"
        if not isinstance(item, str) or not item.strip():
            raise InvalidInput("must be a link or a variable that holds one", field=where)
        link = item.strip()
        if len(link) > MAX_LINK_CHARS:
            raise InvalidInput(f"is longer than {MAX_LINK_CHARS} characters", field=where)
        if not has_variable(link):
            reason = web_fetch.literal_refusal(link)
            if reason:
                raise InvalidInput(reason, field=where)
        links.append(link)
    return links


def has_variable(text: str) -> bool:
    return "{" in text and "}" in text


def claim(account_id: int, files: list[AttachedFile], *, keep: Keeper, now: datetime) -> None:
    """Keep the files as long as a `keep` needs them (never shorter than they already are).

    Call it before saving the owner: a claim whose owner is never saved only keeps a file
    longer. The record's retention only moves up (pending → message → template) through a
    conditional write; the S3 tag follows the record, and is set again if a concurrent
    claim moved the record while this one was tagging.
    """
    lower = s3.RETENTION_ORDER[: s3.RETENTION_ORDER.index(keep)]
    for file in files:
        record = UploadModel(account_id, file.upload_id)
        actions: list[Any] = [UploadModel.retention.set(keep)]
        if keep == "message":
            upload = UploadModel.get(account_id, file.upload_id, consistent_read=True)
            actions.append(UploadModel.expires_at.set(upload.created_at + timedelta(days=s3.MESSAGE_DAYS)))
        else:
            actions.append(UploadModel.expires_at.remove())
        try:
            record.update(actions=actions, condition=UploadModel.retention.is_in(*lower))
        except UpdateError as error:
            if not is_condition_failure(error):
                raise
        tagged = None
        for _ in range(3):
            current = UploadModel.get(account_id, file.upload_id, consistent_read=True).retention
            if current == tagged:
                break
            s3.set_retention(file.key, cast(s3.Retention, current), version_id=file.version_id)
            tagged = current


# ------------------------------------------------------------------ at send time


def load(
    files: list[AttachedFile],
    links: list[str],
    *,
    fetcher: web_fetch.Fetcher,
    scratch: ExitStack,
    limit_bytes: int = limits.EMAIL_ATTACHMENTS_BYTES,
    links_timeout: float = LINKS_TIMEOUT_SECONDS,
) -> tuple[mime.Attachment, ...]:
    """The email's attachments: uploaded files read lazily from S3, links downloaded now.

    Links (already filled in) share what the uploaded files leave of `limit_bytes` and one
    time budget. Temporary files are removed when `scratch` closes.
    """
    items = [
        mime.Attachment(filename=f.filename, content_type=f.content_type, size=f.size, open=_s3_opener(f))
        for f in files
    ]
    left = limit_bytes - sum(f.size for f in files)
    deadline = time.monotonic() + links_timeout
    for link in links:
        shown = link if len(link) <= 200 else link[:200] + "…"
        if has_variable(link):
            raise AttachmentFailure(f"the attachment link {shown} still holds a variable", retryable=False)
        if left <= 0:
            raise AttachmentFailure(
                f"no room for the file at {shown}: an email's attachments may take up to "
                f"{limits.megabytes(limit_bytes)}",
                retryable=False,
            )
        seconds = deadline - time.monotonic()
        if seconds <= 0:
            raise AttachmentFailure(
                f"downloading the files by link took longer than {links_timeout:.0f} s", retryable=True
            )
        try:
            fetched = fetcher.fetch(link, max_bytes=left, timeout=seconds)
        except web_fetch.FetchTooLarge:
            raise AttachmentFailure(
                f"the file at {shown} does not fit: an email's attachments may take up to "
                f"{limits.megabytes(limit_bytes)}, and {left} bytes were left",
                retryable=False,
            ) from None
        except web_fetch.FetchError as error:
            raise AttachmentFailure(
                f"could not download {shown}: {error.reason}", retryable=error.retryable
            ) from None
        scratch.callback(fetched.close)
        left -= fetched.size
        filename = uploads.safe_filename(fetched.filename, default="attachment")
        content_type = fetched.content_type
        try:
            content_type = uploads.content_type_for(content_type, filename)
        except InvalidInput:
            content_type = uploads.content_type_for(None, filename)
        items.append(
            mime.Attachment(
                filename=filename, content_type=content_type, size=fetched.size, open=fetched.open
            )
        )
    return tuple(items)


def _s3_opener(file: AttachedFile) -> Any:
    def open_file() -> BinaryIO:
        try:
            stream = s3.open_object(file.key, etag=file.etag, version_id=file.version_id)
        except s3.ObjectMissing:
            raise AttachmentFailure(
                f"the file {file.filename!r} is no longer stored (files of messages are kept "
                f"{s3.MESSAGE_DAYS} days after upload)",
                retryable=False,
            ) from None
        except s3.ObjectChanged:
            raise AttachmentFailure(
                f"the file {file.filename!r} was replaced after it was attached", retryable=False
            ) from None
        except s3.StorageUnavailable as error:
            raise AttachmentFailure(
                f"the file {file.filename!r} could not be read from storage: {error}", retryable=True
            ) from None
        return cast(BinaryIO, _GuardedStream(stream, file))

    return open_file


class _GuardedStream:
    """S3's stream, whose read errors and short reads become retryable AttachmentFailures."""

    def __init__(self, stream: BinaryIO, file: AttachedFile) -> None:
        self._stream = stream
        self._file = file
        self._read = 0

    def read(self, size: int = -1) -> bytes:
        try:
            chunk = self._stream.read(size)
        except Exception as error:
            raise AttachmentFailure(
                f"reading the file {self._file.filename!r} from storage failed: {type(error).__name__}",
                retryable=True,
            ) from None
        self._read += len(chunk)
        if (not chunk or size < 0) and self._read != self._file.size:
            raise AttachmentFailure(
                f"the file {self._file.filename!r} came back from storage with {self._read} of "
                f"{self._file.size} bytes",
                retryable=True,
            )
        return chunk

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> _GuardedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
