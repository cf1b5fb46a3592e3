"""The email addresses of a lead's, contact's or company's contacts, read from Kommo.

One rule for a single compose and a campaign's audience: `which` "main" takes the main
contact (a company's contacts carry no main flag in Kommo, so its first contact) and that
contact's first address; "all" takes every address of every contact, main contact first.
Each address once, compared without case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pynamodb.exceptions import DoesNotExist

from mailer_core.base.errors import Conflict
from mailer_core.kommo import accounts as kommo_accounts
from mailer_core.kommo.client import Contact, contact_of
from mailer_core.store.models import AccountModel

WHICH = ("main", "all")


def entity_recipients(account_id: int, kind: str, entity_id: int, which: str) -> list[str]:
    """The addresses of the entity's main contact (`which` "main": its first address) or of all
    its contacts ("all"), each address once."""
    try:
        account = AccountModel.get(account_id)
    except DoesNotExist:
        raise Conflict("the account is not connected to Kommo", field="entity") from None
    contacts = kommo_accounts.client_for_account(account).entity_contacts(kind, entity_id)  # type: ignore[arg-type]
    return [address for _, address in pick_addresses(contacts, which)]


def pick_addresses(contacts: Sequence[Contact], which: str) -> list[tuple[Contact, str]]:
    """The addresses `which` ("main" or "all") takes from an entity's contacts (main first), each
    with the contact it belongs to, each address once."""
    if which == "main":
        contacts = [c for c in contacts if c.is_main] or list(contacts[:1])
    picked: list[tuple[Contact, str]] = []
    seen: set[str] = set()
    for contact in contacts:
        for address in contact.emails:
            if address.lower() not in seen:
                seen.add(address.lower())
                picked.append((contact, address))
            if which == "main":
                break
    return picked


def linked_contacts(
    kind: str, entity: Mapping[str, Any], contacts: Mapping[int, Mapping[str, Any]]
) -> list[Contact]:
    """An entity's contacts from data read already (`contacts` by id), main first, as
    `KommoClient.entity_contacts` gives them: a contact is its own main contact; a lead's or
    company's links come from `with=contacts`; contacts not in `contacts` are left out."""
    if kind == "contacts":
        return [contact_of(entity, is_main=True)]
    links = (entity.get("_embedded") or {}).get("contacts") or []
    main = {int(link["id"]): bool(link.get("is_main")) for link in links}
    ordered = sorted(main, key=lambda cid: not main[cid])  # stable: Kommo's order otherwise
    return [contact_of(contacts[cid], is_main=main[cid]) for cid in ordered if cid in contacts]
