"""The API's OpenAPI document (openapi.json beside this module), served at /openapi.json."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

DOCUMENT_PATH = Path(__file__).with_name("openapi.json")


@lru_cache(maxsize=1)
def document_text() -> str:
    return DOCUMENT_PATH.read_text(encoding="utf-8")
