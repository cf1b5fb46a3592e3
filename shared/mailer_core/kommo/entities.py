"""Leads, contacts and companies read in bulk, with the contacts and companies they link to.

One reader for everyone who needs many entities at once (the variables of a send batch, an
audience's page): 250 ids to a request (`filter[id][]`), `with=contacts` for leads and
companies, through the account's rate-limited client. N leads with one contact and one
company each cost about 3 * N / 250 requests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mailer_core.kommo.client import MAX_PAGE_SIZE, EntityType, KommoClient

Loaded = Mapping[str, dict[int, dict[str, Any]]]
"""What has been read: {"leads": {id: json}, "contacts": {…}, "companies": {…}}."""


def empty() -> dict[str, dict[int, dict[str, Any]]]:
    """An empty `Loaded`, one map per entity type."""
    return {"leads": {}, "contacts": {}, "companies": {}}


def with_for(entity_type: EntityType) -> list[tuple[str, str]]:
    """The `with` parameter that embeds a lead's or company's contacts (contacts need none)."""
    return [("with", "contacts")] if entity_type in ("leads", "companies") else []


def read_by_ids(client: KommoClient, entity_type: EntityType, ids: Sequence[int], *, into: Loaded) -> None:
    """Read `ids` (those not in `into` yet) 250 to a request into `into[entity_type]`; ids Kommo
    no longer has are simply not there afterwards."""
    known = into[entity_type]
    wanted = [i for i in dict.fromkeys(int(i) for i in ids) if i not in known]
    for start in range(0, len(wanted), MAX_PAGE_SIZE):
        chunk = wanted[start : start + MAX_PAGE_SIZE]
        params = [*with_for(entity_type), *(("filter[id][]", str(i)) for i in chunk)]
        for entity in client.iter_pages(f"/api/v4/{entity_type}", entity_type, params):
            known[int(entity["id"])] = entity


def linked_ids(entities: Iterable[Mapping[str, Any]], kind: str) -> list[int]:
    """The ids of the `kind` ("contacts", "companies") these entities embed, each once, in order."""
    found: list[int] = []
    for entity in entities:
        embedded = entity.get("_embedded") or {}
        found += [int(link["id"]) for link in embedded.get(kind) or []]
    return list(dict.fromkeys(found))


def read_linked(client: KommoClient, entity_type: EntityType, ids: Sequence[int], *, into: Loaded) -> None:
    """Read these entities, then the contacts and companies they link to, 250 per request,
    skipping whatever `into` holds already."""
    read_by_ids(client, entity_type, ids, into=into)
    add_links(
        client,
        entity_type,
        [into[entity_type][int(i)] for i in ids if int(i) in into[entity_type]],
        into=into,
    )


def add_links(
    client: KommoClient, entity_type: EntityType, entities: Sequence[Mapping[str, Any]], *, into: Loaded
) -> None:
    """Read the contacts and companies that `entities` (already read) link to."""
    if entity_type != "contacts":
        read_by_ids(client, "contacts", linked_ids(entities, "contacts"), into=into)
    read_by_ids(client, "companies", linked_ids(entities, "companies"), into=into)
