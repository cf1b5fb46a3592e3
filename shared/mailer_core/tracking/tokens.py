"""Opaque, signed tokens for the open pixel (/o/{token}), clicks (/c/{token}) and a campaign
email's unsubscribe link (/u/{token}, docs/opt-out.md).

A token names one message (and, for a click, one link of it) and when it was issued (the
send time, which the machine-traffic rules use without reading the message). It is compact
binary, HMAC-SHA256 signed with MAILER_TRACKING_SECRET (a NoEcho template parameter; the local
stack and the tests set their own) and base64url-encoded. It carries no URL: a click redirects
only to a target stored on the message at send time (never an open redirect). A forged,
altered or truncated token does not verify (constant-time comparison) and `verify` returns None.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass

from mailer_core.base.config import get_settings

OPEN = "o"
CLICK = "c"
UNSUBSCRIBE = "u"
DOWNLOAD = "d"  # an attachment's download link (tracking.downloads); link_index: the file's
_VERSION = 1
# version, kind, account id, issued at (epoch s), link index, url hash; then the message id.
_HEAD = struct.Struct(">BcQIH6s")
_MAC_BYTES = 16  # 128 bits of HMAC-SHA256: far beyond guessing over HTTP
_MAX_MESSAGE_ID = 64


class TrackingNotConfigured(RuntimeError):
    """No tracking secret: tracking is off (the caller leaves the body as it is)."""


@dataclass(frozen=True)
class TrackingToken:
    kind: str  # OPEN, CLICK or UNSUBSCRIBE
    account_id: int
    message_id: str
    issued_at: int  # epoch seconds (the send time)
    link_index: int = 0
    url_hash: bytes = b"\0" * 6

    def matches(self, url: str) -> bool:
        """The stored target is the one this click token was made for."""
        return hmac.compare_digest(self.url_hash, url_hash(url))


def url_hash(url: str) -> bytes:
    return hashlib.sha256(url.encode("utf-8")).digest()[:6]


def _secret(secret: str | None) -> bytes:
    value = get_settings().tracking_secret if secret is None else secret
    if not value:
        raise TrackingNotConfigured("MAILER_TRACKING_SECRET is not set")
    return value.encode("utf-8")


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_BYTES]


def sign(token: TrackingToken, *, secret: str | None = None) -> str:
    message_id = token.message_id.encode("utf-8")
    if not message_id or len(message_id) > _MAX_MESSAGE_ID:
        raise ValueError("message id of 1 to 64 bytes expected")
    payload = (
        _HEAD.pack(
            _VERSION,
            token.kind.encode("ascii"),
            token.account_id,
            token.issued_at,
            token.link_index,
            token.url_hash,
        )
        + message_id
    )
    raw = payload + _mac(_secret(secret), payload)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def open_token(account_id: int, message_id: str, issued_at: int, *, secret: str | None = None) -> str:
    return sign(TrackingToken(OPEN, account_id, message_id, issued_at), secret=secret)


def click_token(
    account_id: int, message_id: str, issued_at: int, index: int, url: str, *, secret: str | None = None
) -> str:
    token = TrackingToken(CLICK, account_id, message_id, issued_at, index, url_hash(url))
    return sign(token, secret=secret)


def unsubscribe_token(account_id: int, message_id: str, issued_at: int, *, secret: str | None = None) -> str:
    """The token of a campaign email's unsubscribe URL: it names the message (whose recipient
    opts out), never an address, so the URL gives nothing away when forwarded or logged."""
    return sign(TrackingToken(UNSUBSCRIBE, account_id, message_id, issued_at), secret=secret)


def download_token(
    account_id: int, message_id: str, issued_at: int, index: int, *, secret: str | None = None
) -> str:
    """The token of attachment `index`'s download link in one email."""
    return sign(TrackingToken(DOWNLOAD, account_id, message_id, issued_at, index), secret=secret)


def verify(text: str, *, kind: str, secret: str | None = None) -> TrackingToken | None:
    """The token, if it is well formed, of this kind and signed with our secret; else None."""
    if not text or len(text) > 200:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        key = _secret(secret)
    except (binascii.Error, ValueError, TrackingNotConfigured):
        return None
    if len(raw) <= _HEAD.size + _MAC_BYTES:
        return None
    payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(key, payload)):
        return None
    version, kind_byte, account_id, issued_at, index, digest = _HEAD.unpack_from(payload)
    if version != _VERSION or kind_byte != kind.encode("ascii"):
        return None
    try:
        message_id = payload[_HEAD.size :].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return TrackingToken(kind, account_id, message_id, issued_at, index, digest)
