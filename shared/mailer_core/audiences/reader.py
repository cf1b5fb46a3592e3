"""An audience read page by page, with its recipients' Kommo data, 250 entities to a request.

`read_page(account_id, audience, cursor, clock=…)` reads the next page of one source and says
where the next page starts; the sources come one after another: the `ids` (250 at a time), the
Kommo `filter` (Kommo's own pages of 250, ordered by id), then each target list (up to 5,000
members at a time, 004's packages, of which at most 250 CRM entities: one Query). A page's
leads, contacts or companies are read with their contacts and companies in bulk
(`kommo.entities`: three requests for 250 leads with one contact and one company each), through
the account's rate-limited client, and handed back with the page so a campaign renders without
reading Kommo again. Nothing but the current page is held.

A page may hold no recipients (every entity without an address, a list's page of gone leads):
go on while `cursor` is not None.

Kommo pages a filtered list by number. Ordered by id, a lead that leaves the filter while the
audience is read (a campaign's own trigger moves it to another stage) would shift the next
leads back by one page position and a plain "next page" would skip them. So the cursor keeps
the last page and the last id taken; the next read asks for that page again and takes what
comes after the last id, and only when nothing does moves on to the next page. That holds
while fewer than 250 leads leave between two reads; a lead that joins before the last id
taken is not read (it was not in the audience when its place was passed).

`skipped` counts, by why: `not_found` (an id or a list's entity Kommo no longer has),
`no_address` (an entity whose contacts have no email address), `bad_address` (an address in
Kommo that is not one), `duplicate` (an address already on this page), `not_in_filter` (an
entity Kommo returned for the filter that does not meet it: an account without Kommo's API
filtering may answer with its whole list, and nobody outside the filter gets the email).
The campaigns take every address once across pages.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field, replace
from typing import Any

from pynamodb.exceptions import DoesNotExist

from mailer_core.audiences.pages import AudiencePage, Recipient
from mailer_core.audiences.spec import Audience
from mailer_core.base import validation
from mailer_core.base.clock import Clock
from mailer_core.base.errors import Conflict, InvalidInput, MalformedRequest
from mailer_core.kommo import accounts as kommo_accounts
from mailer_core.kommo import entities as kommo_entities
from mailer_core.kommo.client import MAX_PAGE_SIZE, EntityType, KommoClient
from mailer_core.kommo.contacts import linked_contacts, pick_addresses
from mailer_core.store.models import (
    AccountModel,
    TargetListMemberModel,
    TargetListModel,
    target_list_key,
)

PAGE = MAX_PAGE_SIZE  # ids, filtered entities, or a list's CRM entities per page
LIST_PAGE = 5000  # a target list's members per page (plain addresses need no Kommo read)
NOT_OURS = "cursor is not one this audience gave out"


@dataclass(frozen=True)
class Position:
    """Where a page starts: the source's index and the place in it (`offset` in the ids; the
    filter's last `page` read and `last_id` taken; a list's last `member` read)."""

    source: int = 0
    offset: int = 0
    page: int = 0
    last_id: int = 0
    member: str | None = None

    def encode(self) -> str:
        raw = {"s": self.source, "o": self.offset, "p": self.page, "l": self.last_id, "m": self.member}
        return base64.urlsafe_b64encode(json.dumps(raw, separators=(",", ":")).encode()).decode()

    @classmethod
    def decode(cls, cursor: str) -> Position:
        """The position a cursor carries; anything else is the caller's 400 naming `cursor`."""
        try:
            raw = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
        except (ValueError, UnicodeEncodeError, binascii.Error) as exc:
            raise MalformedRequest(NOT_OURS, field="cursor") from exc
        if not isinstance(raw, dict) or set(raw) != {"s", "o", "p", "l", "m"}:
            raise MalformedRequest(NOT_OURS, field="cursor")
        numbers = [raw[k] for k in ("s", "o", "p", "l")]
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in numbers):
            raise MalformedRequest(NOT_OURS, field="cursor")
        member = raw["m"]
        if member is not None and (not isinstance(member, str) or not member or len(member) > 400):
            raise MalformedRequest(NOT_OURS, field="cursor")
        return cls(source=raw["s"], offset=raw["o"], page=raw["p"], last_id=raw["l"], member=member)


def sources(audience: Audience) -> list[tuple[str, str | None]]:
    """The audience's sources in reading order: ("ids", None), ("filter", None), ("list", id)…"""
    found: list[tuple[str, str | None]] = []
    if audience.ids:
        found.append(("ids", None))
    if audience.filter is not None:
        found.append(("filter", None))
    found += [("list", list_id) for list_id in audience.target_lists]
    return found


@dataclass
class _Page:
    """What one read collects."""

    audience: Audience
    recipients: list[Recipient] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    loaded: dict[str, dict[int, dict[str, Any]]] = field(default_factory=kommo_entities.empty)
    seen: set[str] = field(default_factory=set)

    def skip(self, why: str, count: int = 1) -> None:
        if count:
            self.skipped[why] = self.skipped.get(why, 0) + count

    def add(
        self, address: str, *, entity: tuple[str, int] | None, name: str | None, contact_id: int | None
    ) -> None:
        try:
            address = validation.email_address(address, "address")
        except InvalidInput:
            self.skip("bad_address")
            return
        if address.lower() in self.seen:
            self.skip("duplicate")
            return
        self.seen.add(address.lower())
        self.recipients.append(Recipient(address, entity, name or None, contact_id=contact_id))

    def add_entity(self, entity_type: EntityType, entity_id: int) -> None:
        entity = self.loaded[entity_type].get(int(entity_id))
        if entity is None:
            self.skip("not_found")
            return
        picked = pick_addresses(
            linked_contacts(entity_type, entity, self.loaded["contacts"]), self.audience.contacts
        )
        if not picked:
            self.skip("no_address")
        for contact, address in picked:
            self.add(address, entity=(entity_type, int(entity_id)), name=contact.name, contact_id=contact.id)


class _Kommo:
    """The account's client, made on first use (a page of plain addresses needs none)."""

    def __init__(self, account_id: int, clock: Clock, client: KommoClient | None) -> None:
        self.account_id, self.clock, self._client = account_id, clock, client

    def __call__(self) -> KommoClient:
        if self._client is None:
            try:
                account = AccountModel.get(int(self.account_id))
            except DoesNotExist:
                raise Conflict("the account is not connected to Kommo", field="audience") from None
            self._client = kommo_accounts.client_for_account(account, clock=self.clock)
        return self._client


def read_page(
    account_id: int,
    audience: Audience,
    cursor: str | None,
    *,
    clock: Clock,
    client: KommoClient | None = None,
) -> AudiencePage:
    """The page of `audience` that starts at `cursor` (None: the first), and the next page's
    cursor (None after the last). `client` replaces the account's own Kommo client (tests)."""
    position = Position.decode(cursor) if cursor else Position()
    found = sources(audience)
    if position.source >= len(found):
        if cursor:
            raise MalformedRequest(NOT_OURS, field="cursor")
        return AudiencePage(recipients=[], cursor=None)
    kind, list_id = found[position.source]
    page = _Page(audience)
    kommo = _Kommo(account_id, clock, client)
    if kind == "ids":
        following = _read_ids(page, position, kommo)
    elif kind == "filter":
        following = _read_filter(page, position, kommo)
    else:
        following = _read_list(page, position, kommo, account_id, str(list_id))
    if following is None and position.source + 1 < len(found):
        following = Position(source=position.source + 1)
    loaded = {k: dict(v) for k, v in page.loaded.items() if v}
    return AudiencePage(
        recipients=page.recipients,
        cursor=following.encode() if following is not None else None,
        skipped=page.skipped,
        entities=loaded,
    )


def _read_ids(page: _Page, position: Position, kommo: _Kommo) -> Position | None:
    ids = page.audience.ids[position.offset : position.offset + PAGE]
    kommo_entities.read_linked(kommo(), page.audience.entity_type, ids, into=page.loaded)
    for entity_id in ids:
        page.add_entity(page.audience.entity_type, entity_id)
    offset = position.offset + len(ids)
    return replace(position, offset=offset) if offset < len(page.audience.ids) else None


def _read_filter(page: _Page, position: Position, kommo: _Kommo) -> Position | None:
    audience = page.audience
    assert audience.filter is not None
    entity_type = audience.entity_type
    params = [*kommo_entities.with_for(entity_type), *audience.filter.params(), ("order[id]", "asc")]
    client = kommo()

    def kommo_page(number: int) -> tuple[list[dict[str, Any]], bool]:
        query = [*params, ("page", str(number)), ("limit", str(PAGE))]
        answer = client.get(f"/api/v4/{entity_type}", query)
        if answer is None:  # 204: nothing on this page
            return [], False
        items = [e for e in (answer.get("_embedded") or {}).get(entity_type) or [] if isinstance(e, dict)]
        return items, "next" in (answer.get("_links") or {})

    number = max(position.page, 1)
    items, more = kommo_page(number)
    taken = [e for e in items if int(e["id"]) > position.last_id]
    if not taken and position.page and more:
        number += 1
        items, more = kommo_page(number)
        taken = [e for e in items if int(e["id"]) > position.last_id]
    page.skip("not_in_filter", sum(1 for e in taken if not audience.filter.meets_kommos_part(e)))
    kept = [e for e in taken if audience.filter.keeps(e)]
    for entity in kept:
        page.loaded[entity_type][int(entity["id"])] = entity
    kommo_entities.add_links(client, entity_type, kept, into=page.loaded)
    for entity in kept:
        page.add_entity(entity_type, int(entity["id"]))
    if not more:
        return None
    last_id = max((int(e["id"]) for e in taken), default=position.last_id)
    return replace(position, page=number, last_id=last_id)


def _read_list(
    page: _Page, position: Position, kommo: _Kommo, account_id: int, list_id: str
) -> Position | None:
    try:
        TargetListModel.get(int(account_id), list_id)
    except DoesNotExist:
        return None  # deleted since the audience was saved: it adds nobody
    key = target_list_key(account_id, list_id)
    start = {"list_key": {"S": key}, "member": {"S": position.member}} if position.member else None
    results = TargetListMemberModel.query(key, limit=LIST_PAGE, page_size=LIST_PAGE, last_evaluated_key=start)
    members, entities = [], 0
    for member in results:
        members.append(member)
        entities += member.entity_type is not None and member.entity_id is not None
        if entities >= PAGE:
            break  # a page's entities are read from Kommo in one request per kind
    wanted: dict[EntityType, list[int]] = {}
    for member in members:
        if member.entity_type is not None and member.entity_id is not None:
            wanted.setdefault(member.entity_type, []).append(int(member.entity_id))  # type: ignore[arg-type]
    for entity_type, ids in wanted.items():
        kommo_entities.read_linked(kommo(), entity_type, ids, into=page.loaded)
    for member in members:
        if member.entity_type is not None and member.entity_id is not None:
            page.add_entity(member.entity_type, int(member.entity_id))  # type: ignore[arg-type]
        elif member.address:
            page.add(str(member.address), entity=None, name=member.name, contact_id=None)
    more = entities >= PAGE or results.last_evaluated_key is not None
    return replace(position, member=str(members[-1].member)) if more and members else None
