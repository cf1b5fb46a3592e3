"""`POST /v1/uploads`: a presigned S3 POST for one file, and the record of that upload.

Files never pass through the API (API Gateway takes at most 10 MB and answers within 29 s):
the widget asks for an upload, then POSTs the file straight to S3 with the fields it got,
then names the upload's id in a message (`attachments: [{"upload_id": …}]`) or a template.

The declared size is checked against the purpose's limit here (413 naming it), and the
presigned POST's policy repeats it as a `content-length-range`, so S3 itself refuses a
bigger file. The record (UploadModel) keeps the owner, the declared size, the display name
and the type; it lives `s3.PENDING_DAYS` unless a message or a template claims it
(`attachments.claim`). The object's key is scoped by account:
`uploads/{account_id}/{upload_id}/{ASCII form of the name}`; the display name, Cyrillic
included, lives in the record and goes into the email's MIME headers (RFC 2231).
"""

from __future__ import annotations

import mimetypes
import re
import unicodedata
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from mailer_core.adapters import s3
from mailer_core.base import limits, validation
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.errors import InvalidInput
from mailer_core.store.models import UploadModel

if TYPE_CHECKING:
    from mailer_core.accounts.auth import Caller  # a type only: the send worker needs no JWT library

FIELDS = {"filename", "content_type", "size", "purpose"}
LIMITS = {"attachment": limits.EMAIL_ATTACHMENTS_BYTES, "inline_image": limits.INLINE_IMAGE_BYTES}
LIMIT_WORDS = {"attachment": "an attached file", "inline_image": "an image in the body"}
# Images a mail client shows inline; SVG is left out (it can carry scripts).
INLINE_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
MAX_FILENAME_BYTES = 200
MAX_KEY_NAME = 100
POST_EXPIRES_SECONDS = 900

_TOKEN = r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"
_CONTENT_TYPE = re.compile(rf"^{_TOKEN}/{_TOKEN}$")
_WINDOWS_RESERVED = re.compile(r'[<>:"/\\|?*]')


def _without_controls(ch: str) -> str:
    category = unicodedata.category(ch)
    return " " if category == "Cc" else "" if category[0] == "C" else ch


def safe_filename(name: str, *, default: str = "file") -> str:
    """A display name safe in a MIME header and on any disk: no folders, no control or
    direction-changing characters, no characters Windows refuses, at most 200 UTF-8 bytes
    (the extension kept); Cyrillic and other letters stay as they are."""
    name = unicodedata.normalize("NFC", name)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    # Controls (tab, newline …) become spaces; other category C characters go: format ones such
    # as U+202E (right-to-left override, which disguises "exe.pdf"), surrogates, unassigned.
    name = "".join(_without_controls(ch) for ch in name)
    name = _WINDOWS_RESERVED.sub("_", name)
    name = re.sub(r"\s+", " ", name).strip(" .")
    if not name:
        return default
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem or len(extension) > 16:
        stem, dot, extension = name, "", ""
    budget = MAX_FILENAME_BYTES - len((dot + extension).encode("utf-8"))
    encoded = stem.encode("utf-8")
    if len(encoded) > budget:
        stem = encoded[:budget].decode("utf-8", "ignore").rstrip(" .") or default
    return stem + dot + extension


def key_name(filename: str) -> str:
    """The last part of the object's key: ASCII letters, digits, dot, dash and underscore."""
    stem, dot, extension = filename.rpartition(".")
    if not dot:
        stem, extension = filename, ""

    def ascii_only(text: str) -> str:
        return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9._-]", "_", text)).strip("._")

    stem, extension = ascii_only(stem)[:MAX_KEY_NAME] or "file", ascii_only(extension)[:16]
    return f"{stem}.{extension}" if extension else stem


def content_type_for(value: Any, filename: str, *, field: str = "content_type") -> str:
    """The declared type (`type/subtype`, lower case), else a guess from the name."""
    if value is None or value == "":
        guessed, _ = mimetypes.guess_type(filename, strict=False)
        return guessed or "application/octet-stream"
    if not isinstance(value, str):
        raise InvalidInput("must be a string like application/pdf", field=field)
    bare = value.split(";", 1)[0].strip().lower()
    if not _CONTENT_TYPE.match(bare):
        raise InvalidInput("must be a media type like application/pdf", field=field)
    return bare


def _size(data: dict[str, Any]) -> int:
    value = data.get("size")
    if value is None:
        raise InvalidInput("is required: the file's size in bytes", field="size")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput("must be the file's size in bytes (a whole number)", field="size")
    return value


def public_view(upload: UploadModel) -> dict[str, Any]:
    return {
        "id": upload.upload_id,
        "purpose": upload.purpose,
        "filename": upload.filename,
        "content_type": upload.content_type,
        "size": int(upload.declared_size),
        "created_at": upload.created_at.isoformat(),
        "expires_at": upload.expires_at.isoformat() if upload.expires_at else None,
    }


def create(caller: Caller, payload: Any, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """Record an upload and presign the S3 POST that carries its file."""
    data = validation.require_object(payload)
    validation.reject_unknown(data, FIELDS)
    purpose = validation.text(data, "purpose", default="attachment")
    if purpose not in LIMITS:
        raise InvalidInput(f"must be one of {', '.join(LIMITS)}", field="purpose")
    filename = safe_filename(validation.text(data, "filename", required=True, allow_empty=False))
    content_type = content_type_for(data.get("content_type"), filename)
    if purpose == "inline_image" and content_type not in INLINE_IMAGE_TYPES:
        raise InvalidInput(
            f"an image in the body must be one of {', '.join(INLINE_IMAGE_TYPES)}", field="content_type"
        )
    size = _size(data)
    limit = LIMITS[purpose]
    if size > limit:
        raise limits.too_large(LIMIT_WORDS[purpose], field="size", limit_bytes=limit, total_bytes=size)

    now = clock.now()
    upload_id = clock.new_id()
    key = s3.upload_key(caller.account_id, upload_id, key_name(filename))
    upload = UploadModel(
        caller.account_id,
        upload_id,
        user_id=caller.user_id,
        purpose=purpose,
        filename=filename,
        content_type=content_type,
        declared_size=size,
        s3_key=key,
        retention="pending",
        created_at=now,
        expires_at=now + timedelta(days=s3.PENDING_DAYS),
    )
    post = s3.presign_upload(
        key, content_type=content_type, max_bytes=size, now=now, expires_in=POST_EXPIRES_SECONDS
    )
    upload.save(condition=UploadModel.upload_id.does_not_exist())
    return {
        **public_view(upload),
        "upload": {
            "method": "POST",
            "url": post.url,
            "fields": post.fields,
            "expires_at": post.expires_at.isoformat(),
        },
    }
