"""Web addresses users give as a redirect target: kept, completed or refused, never trusted."""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

MAX_TARGET_CHARS = 2000


_SAFE = ":/?#[]@!$&'()*+,;=%~"


def web_address(text: str) -> str | None:
    """A rendered target as a URL to redirect to, or None (then the thank-you page).

    `https://…` and `http://…` are kept (non-ASCII percent-encoded, an international host
    name in IDNA); a bare host like `example.com/offer` gets `https://`; anything else (empty,
    spaces, another scheme) is None."""
    value = text.strip()
    if not value or len(value) > MAX_TARGET_CHARS or any(c.isspace() for c in value):
        return None
    if "://" not in value:
        head = value.split("/", 1)[0]
        if "." not in head or ":" in head or value.startswith(("/", ".")):
            return None
        value = "https://" + value
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        if parts.scheme.lower() not in ("http", "https") or not host or parts.username or parts.password:
            return None
        netloc = parts.netloc
        if not host.isascii():
            netloc = netloc.lower().replace(host, host.encode("idna").decode("ascii"))
    except (ValueError, UnicodeError):
        return None
    rebuilt = urlunsplit((parts.scheme.lower(), netloc, parts.path, parts.query, parts.fragment))
    return quote(rebuilt, safe=_SAFE)
