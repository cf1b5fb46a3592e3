"""What reading an audience yields, page by page: the types the campaigns build on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Recipient:
    """One address of an audience; `entity` is the CRM entity its email is about (for the
    variables), ("leads", 123), or None for a plain address of a target list."""

    address: str
    entity: tuple[str, int] | None = None
    name: str | None = None
    contact_id: int | None = None  # the Kommo contact the address is of (exclusion lists name contacts)


@dataclass(frozen=True)
class AudiencePage:
    """A page of an audience. `cursor` is where the next page starts (None: this was the last);
    `skipped` counts what was left out while reading, by why (e.g. `no_address`); `entities` is
    the Kommo data read for these recipients ({"leads": {id: json}, "contacts": …,
    "companies": …}), kept so that rendering need not read it again."""

    recipients: list[Recipient]
    cursor: str | None
    skipped: dict[str, int] = field(default_factory=dict)
    entities: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
