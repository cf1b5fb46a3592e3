"""A message's own view (`GET /v1/messages/{id}/body`, docs/letters.md#a-letters-own-view).

The body as sent: the subject, HTML and plain-text part exactly as the send worker handed them
to SMTP (variables filled, signature, tracked links and the open pixel in), kept in S3 by the
worker after the server accepted the email (sending.outcomes.keep_body). Before it is sent, or
for an email sent before bodies were kept, `sent` is null and the stored sources (the subject
and HTML with their variables) are what there is. The attachments are listed with the record.
"""

from __future__ import annotations

import json
from typing import Any

from mailer_core.accounts.auth import Caller
from mailer_core.adapters import s3
from mailer_core.files import attachments
from mailer_core.messages.queries import load


def view(caller: Caller, message_id: str) -> dict[str, Any]:
    message = load(caller, message_id)
    kept = s3.get_text_if_any(s3.sent_body_key(int(message.account_id), message.message_id))
    html = message.html if message.html is not None else None
    if html is None and message.html_s3_key:
        html = s3.get_html(str(message.html_s3_key))
    return {
        "id": message.message_id,
        "status": message.status,
        "sent": json.loads(kept) if kept else None,  # subject, html, text, sent_at
        "source": {"subject": message.subject, "html": html or ""},
        "attachments": [attachments.AttachedFile.from_attribute(a).view() for a in message.attachments or []],
        "attachment_links": list(message.attachment_links or []),
    }
