"""Moved: large bodies are kept by `mailer_core.storage`, the one module that talks to S3.

This name stays for code written before the move; import `storage` in new code.
"""

from __future__ import annotations

from mailer_core.storage import INLINE_LIMIT, body_key, get_html, put_html

__all__ = ["INLINE_LIMIT", "body_key", "get_html", "put_html"]
