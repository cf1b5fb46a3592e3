"""Exclusion lists: the recipients of a page that a campaign leaves out.

A recipient is excluded when one of the lists holds its address (compared in lower case), the
entity its email is about (`leads:123`) or the contact its address comes from
(`contacts:45`). One BatchGetItem per 100 keys, never a read per recipient, after one that
finds which of the lists still exist: a deleted list excludes nobody, whatever of its members
its deletion left behind.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mailer_core.audiences.pages import Recipient
from mailer_core.store.models import TargetListMemberModel, TargetListModel, entity_member, target_list_key


def member_keys(recipient: Recipient) -> list[str]:
    """The member keys that would exclude `recipient`."""
    keys = [recipient.address.lower()]
    if recipient.entity is not None:
        keys.append(entity_member(*recipient.entity))
    if recipient.contact_id is not None:
        keys.append(entity_member("contacts", recipient.contact_id))
    return keys


def excluded(account_id: int, list_ids: Sequence[str], recipients: Iterable[Recipient]) -> set[str]:
    """The lower-cased addresses of `recipients` that the lists `list_ids` exclude."""
    recipients = list(recipients)
    if not list_ids or not recipients:
        return set()
    lists = TargetListModel.batch_get(
        [(int(account_id), list_id) for list_id in dict.fromkeys(list_ids)], attributes_to_get=["list_id"]
    )
    list_ids = [str(item.list_id) for item in lists]
    wanted: dict[str, set[str]] = {}  # member key -> the addresses it excludes
    for recipient in recipients:
        for key in member_keys(recipient):
            wanted.setdefault(key, set()).add(recipient.address.lower())
    keys = [(target_list_key(account_id, list_id), member) for list_id in list_ids for member in wanted]
    out: set[str] = set()
    for found in TargetListMemberModel.batch_get(keys, attributes_to_get=["list_key", "member"]):
        out |= wanted.get(str(found.member), set())
    return out
