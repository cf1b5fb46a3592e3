"""Attachment download tracking (docs/letters.md#attachment-downloads; 001, December 2018).

An email with `track_downloads` carries its uploaded files as signed download links instead
of MIME attachments: at send time (`links_block`) each file becomes
`{public base}/d/{token}`, the token signed like the pixel's and the clicks' (tracking.tokens,
kind "d", the file's index in it), listed under the body with its name and size, in the HTML
and the text part. Files attached by URL (downloaded at send time) stay attachments.

The public route (`handle`, on the track function) checks the token, answers a redirect to a
short-lived S3 URL that saves the file under its name, and, for a person's GET, records the
file's first download once: a conditional UpdateItem that adds "download#<index>" to the
message's `download_keys`, counts it, and appends "downloaded" to its timeline. That first
download announces the "downloaded" event with the source `download<index>`, so the email's
"downloaded" triggers (a note or a task: "the client downloaded the price list") run once per
file and email. Machine fetches (link scanners, previews; tracking.machine_traffic's rules for
clicks) and HEAD requests download but count nothing; with the account's machine filter off
they count as people, as clicks do. An email goes to its recipients as one message, so "per
recipient" is per email: each recipient's email is its own message in a campaign.
"""

from __future__ import annotations

from html import escape

from pynamodb.exceptions import DoesNotExist, UpdateError

from mailer_core.adapters import s3
from mailer_core.base.config import get_settings
from mailer_core.base.logs import logger
from mailer_core.events import announce
from mailer_core.files.attachments import AttachedFile
from mailer_core.store import timeline
from mailer_core.store.conditions import is_condition_failure
from mailer_core.store.models import MessageModel
from mailer_core.tracking import machine_traffic, tokens


def _size(size: int) -> str:
    for unit, step in (("MB", 1024 * 1024), ("KB", 1024)):
        if size >= step:
            return f"{size / step:.1f} {unit}"
    return f"{size} B"


def urls(message: MessageModel, issued_at: int) -> list[tuple[AttachedFile, str]]:
    """Each uploaded file of the message with its signed download URL."""
    base = get_settings().public_base_url.rstrip("/")
    account_id = int(message.account_id)
    files = [AttachedFile.from_attribute(a) for a in message.attachments or []]
    return [
        (f, f"{base}/d/{tokens.download_token(account_id, message.message_id, issued_at, i)}")
        for i, f in enumerate(files)
    ]


def links_block(message: MessageModel, issued_at: int) -> tuple[str, str]:
    """The files' links as an HTML block and as text lines, to put under the body."""
    links = urls(message, issued_at)
    if not links:
        return "", ""
    items = "".join(
        f'<li><a href="{escape(url)}" data-mailer-notrack>{escape(f.filename)}</a> ({_size(f.size)})</li>'
        for f, url in links
    )
    html = f'<div class="mailer-attachments"><p>Attachments:</p><ul>{items}</ul></div>'
    text = "Attachments:\n" + "\n".join(f"- {f.filename} ({_size(f.size)}): {url}" for f, url in links)
    return html, text


def handle(
    token_text: str,
    *,
    method: str,
    user_agent: str,
    source_ip: str,
    headers: dict[str, str],
    now_seconds: float,
) -> str | None:
    """The download route: where to redirect (a short-lived S3 URL), or None for a forged token
    or a file that is gone. A person's first GET of the file is recorded and announced once."""
    token = tokens.verify(token_text, kind=tokens.DOWNLOAD)
    if token is None:
        return None
    try:
        message = MessageModel.get(
            token.account_id,
            token.message_id,
            attributes_to_get=["attachments", "triggers", "account_id", "message_id"],
        )
    except DoesNotExist:
        return None
    files = [AttachedFile.from_attribute(a) for a in message.attachments or []]
    if token.link_index >= len(files):
        return None
    file = files[token.link_index]
    verdict = machine_traffic.classify(
        kind="click",
        method=method,
        user_agent=user_agent,
        source_ip=source_ip,
        headers=headers,
        seconds_since_send=now_seconds - token.issued_at,
    )
    machine = verdict.machine and machine_traffic.filter_on(token.account_id)
    if not machine and method.upper() == "GET":
        try:
            _first_download(message, token.link_index, file.filename, now_seconds)
        except Exception:  # the person still gets the file
            logger.exception("download not recorded", extra={"message_id": token.message_id})
    return s3.presign_download(file.key, file.filename, file.content_type)


def _first_download(message: MessageModel, index: int, filename: str, now_seconds: float) -> None:
    from datetime import UTC, datetime  # cold start: only a person's download needs it

    now = datetime.fromtimestamp(now_seconds, tz=UTC)
    key = f"download#{index}"
    try:
        message.update(
            actions=[
                MessageModel.download_keys.add({key}),
                MessageModel.downloads.set((MessageModel.downloads | 0) + 1),
                timeline.history_append(timeline.entry(now, "downloaded", filename)),
            ],
            condition=MessageModel.message_id.exists() & ~MessageModel.download_keys.contains(key),
        )
    except UpdateError as exc:
        if is_condition_failure(exc):
            return  # downloaded before: counted once
        raise
    if announce.chosen(message, "downloaded"):
        announce.announce_download(int(message.account_id), message.message_id, index, now)
