"""Names shared by the Kommo tests and their fixtures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TOKEN = "test-admin-token"
MANAGER_TOKEN = "test-manager-token"


@dataclass
class Answer:
    """One raw HTTP answer of the stand-in: status, Content-Type and decoded JSON (None if empty)."""

    status: int
    content_type: str
    body: Any


Api = Callable[..., Answer]
