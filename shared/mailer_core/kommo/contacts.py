"""The email addresses of a lead's, contact's or company's contacts, read from Kommo."""

from __future__ import annotations

from pynamodb.exceptions import DoesNotExist

from mailer_core.base.errors import Conflict
from mailer_core.kommo import accounts as kommo_accounts
from mailer_core.store.models import AccountModel


def entity_recipients(account_id: int, kind: str, entity_id: int, which: str) -> list[str]:
    """The addresses of the entity's main contact (`which` "main": its first address) or of all
    its contacts ("all"), each address once."""
    try:
        account = AccountModel.get(account_id)
    except DoesNotExist:
        raise Conflict("the account is not connected to Kommo", field="entity") from None
    contacts = kommo_accounts.client_for_account(account).entity_contacts(kind, entity_id)  # type: ignore[arg-type]
    if which == "main":
        contacts = [c for c in contacts if c.is_main] or contacts[:1]
    addresses: list[str] = []
    for contact in contacts:
        for address in contact.emails:
            if address.lower() not in {a.lower() for a in addresses}:
                addresses.append(address)
            if which == "main":
                break
    return addresses
