"""Size limits of emails, templates and files (the widget's manual), and the 413 naming them.

- the body of an email (text and HTML): 8 MB;
- the attachments of one email, uploaded and downloaded by link together: 100 MB;
- the attachments of a template: 50 MB;
- an image uploaded for the body (inline): 5 MB.

Every refusal is `413 {"error": "too_large", "field": …, "limit_bytes": …}`, with
`total_bytes` when a sum went over.
"""

from __future__ import annotations

from mailer_core.base.errors import PayloadTooLarge

MB = 1024 * 1024
BODY_BYTES = 8 * MB
EMAIL_ATTACHMENTS_BYTES = 100 * MB
TEMPLATE_ATTACHMENTS_BYTES = 50 * MB
INLINE_IMAGE_BYTES = 5 * MB
MAX_RECIPIENTS = 50  # the addresses of one email: to, cc and bcc together


def megabytes(size: int) -> str:
    """`size` in the manual's words: "100 MB", "2.5 MB"."""
    value = size / MB
    return f"{value:.0f} MB" if value == int(value) else f"{value:.1f} MB"


def too_large(what: str, *, field: str, limit_bytes: int, total_bytes: int | None = None) -> PayloadTooLarge:
    """The 413 for `what` (e.g. "the attachments of an email") going over `limit_bytes`."""
    message = f"{what} may take up to {megabytes(limit_bytes)}"
    details: dict[str, int] = {"limit_bytes": limit_bytes}
    if total_bytes is not None:
        message += f"; these take {total_bytes} bytes"
        details["total_bytes"] = total_bytes
    return PayloadTooLarge(message, field=field, **details)
