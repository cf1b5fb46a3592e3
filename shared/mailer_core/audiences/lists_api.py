"""Target lists: saved lists of CRM entities or plain addresses, the rules behind /v1/target-lists.

A list has a name, an owner, a public flag and its `members` count; its members (the
TargetListMembers table, one item each) are addresses (kept in lower case as the key, as
given for display, with an optional name) or CRM entities (`leads:123`). A list serves as an
audience's source (`target_lists`) or as an exclusion list (`exclude_lists`).

Who may do what (the templates' rules, `templates.api`):
- a user sees and uses their own lists and the public ones, and changes (renames, adds or
  removes members, imports, deletes) only their own; another user's private list answers
  404, a public one 403 on a change;
- a widget administrator sees and changes every list of the account and is the only one who
  can change a list's owner (`user_id`).

Members are written with BatchWriteItem, 25 to a request, after one BatchGetItem per 100 that
finds the ones the list holds already; the list's `members` counter then goes up by the
number actually new (one UpdateItem ADD), so adding the same members again changes nothing.
Two imports into one list at the very same moment with rows in common could count a row
twice (BatchWriteItem has no conditions); one import or add at a time keeps it exact.

A CSV import (`import_csv`) takes a header row with an email column (`email`, `e-mail`,
`address`, `почта` …) and an optional name column (`name`, `имя`, `фио` …), separated by
commas, semicolons or tabs. The good rows are kept; each refused row is reported with its
number in the file (the header is row 1) and why: `bad_address`, `duplicate` (earlier in
the file), `empty` (no address). Any refused row makes the answer a 422 naming `csv` whose
`report` says what was imported. Up to `IMPORT_BYTES` and `IMPORT_ROWS` per import (413).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any

from pynamodb.exceptions import DeleteError, DoesNotExist, PutError, UpdateError

from mailer_core.audiences.spec import visible_to
from mailer_core.base import limits, validation
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.errors import Conflict, Forbidden, InvalidInput, NotFound, PayloadTooLarge
from mailer_core.kommo.client import ENTITY_TYPES
from mailer_core.store.models import TargetListMemberModel, TargetListModel, entity_member, target_list_key
from mailer_core.store.pages import decode_cursor, encode_cursor

if TYPE_CHECKING:
    from mailer_core.accounts.auth import Caller  # a type only: the campaigns function needs no JWT library

MAX_NAME_CHARS = 200
MAX_MEMBER_NAME_CHARS = 200
MAX_MEMBERS_PER_REQUEST = 1000  # POST …/members
IMPORT_BYTES = 2 * limits.MB  # one CSV import
IMPORT_ROWS = 10_000
REPORTED_ROWS = 1000  # refused rows listed in a report (all are counted)
_GET_BATCH = 100  # BatchGetItem's most keys
_ENTITY_KEY = re.compile(r"(leads|contacts|companies):([1-9][0-9]{0,18})")
_EMAIL_HEADERS = {"email", "e-mail", "e_mail", "email address", "e-mail address", "mail", "address"}
_EMAIL_HEADERS |= {"адрес", "почта", "электронная почта", "емейл", "имейл"}
_NAME_HEADERS = {"name", "full name", "full_name", "contact", "contact name", "имя", "фио", "контакт"}
_LIST_FIELDS = ("name", "is_public", "user_id")


@dataclass(frozen=True)
class NewMember:
    """A member to add: an address (with an optional name) or a CRM entity."""

    address: str | None = None
    name: str | None = None
    entity_type: str | None = None
    entity_id: int | None = None

    @property
    def key(self) -> str:
        if self.entity_type is not None and self.entity_id is not None:
            return entity_member(self.entity_type, self.entity_id)
        return str(self.address).strip().lower()


@dataclass(frozen=True)
class Added:
    """What `add_members` did: members new to the list and members it held already."""

    added: int = 0
    already: int = 0


# -- the list ------------------------------------------------------------------------------


def public_view(item: TargetListModel, caller: Caller) -> dict[str, Any]:
    return {
        "id": str(item.list_id),
        "name": str(item.name),
        "user_id": int(item.user_id),
        "is_public": bool(item.is_public),
        "members": int(item.members or 0),
        "created_at": item.created_at.isoformat(),
        "updated_at": item.updated_at.isoformat(),
        "can_edit": _can_edit(caller, item),
    }


def _can_edit(caller: Caller, item: TargetListModel) -> bool:
    return caller.is_admin or int(item.user_id) == caller.user_id


def _load(caller: Caller, list_id: str) -> TargetListModel:
    if not list_id or len(list_id) > 64:
        raise NotFound("no such target list", field="list_id")
    try:
        item = TargetListModel.get(caller.account_id, list_id, consistent_read=True)
    except DoesNotExist:
        raise NotFound("no such target list", field="list_id") from None
    if not visible_to(caller, item):
        raise NotFound("no such target list", field="list_id")
    return item


def _editable(caller: Caller, list_id: str) -> TargetListModel:
    item = _load(caller, list_id)
    if not _can_edit(caller, item):
        raise Forbidden(
            "a public target list is changed by its owner or an administrator",
            field="list_id",
            reason="not_owner",
        )
    return item


def _validated(caller: Caller, payload: Any, *, current: TargetListModel | None) -> dict[str, Any]:
    data = validation.require_object(payload)
    validation.reject_unknown(data, _LIST_FIELDS)
    out: dict[str, Any] = {}
    if current is None or "name" in data:
        name = validation.text(data, "name", required=True, max_length=MAX_NAME_CHARS).strip()
        if not name:
            raise InvalidInput("must not be blank", field="name")
        if len(name) > MAX_NAME_CHARS:
            raise InvalidInput(f"is longer than {MAX_NAME_CHARS} characters", field="name")
        out["name"] = name
    if "is_public" in data:
        out["is_public"] = validation.boolean(data, "is_public")
    if "user_id" in data:
        owner = validation.integer(data, "user_id", required=True, minimum=1)
        current_owner = int(current.user_id) if current is not None else caller.user_id
        if owner != current_owner and not caller.is_admin:
            raise Forbidden(
                "only an administrator changes a list's owner", field="user_id", reason="admin_only"
            )
        out["user_id"] = owner
    return out


def list_for(caller: Caller) -> list[dict[str, Any]]:
    """The caller's own and the public lists (every one for an administrator), by name."""
    condition = (
        None
        if caller.is_admin
        else (TargetListModel.user_id == caller.user_id) | (TargetListModel.is_public == True)  # noqa: E712
    )
    found = [
        public_view(t, caller) for t in TargetListModel.query(caller.account_id, filter_condition=condition)
    ]
    return sorted(found, key=lambda v: (v["name"].lower(), v["id"]))


def create(caller: Caller, payload: Any, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    fields = _validated(caller, payload, current=None)
    now = clock.now()
    item = TargetListModel(
        caller.account_id,
        clock.new_id(),
        name=fields["name"],
        user_id=fields.get("user_id", caller.user_id),
        is_public=fields.get("is_public", False),
        members=0,
        created_at=now,
        updated_at=now,
    )
    try:
        item.save(condition=TargetListModel.list_id.does_not_exist())
    except PutError as exc:
        raise Conflict("a target list with this id exists") from exc
    return public_view(item, caller)


def get(caller: Caller, list_id: str) -> dict[str, Any]:
    return public_view(_load(caller, list_id), caller)


def update(caller: Caller, list_id: str, payload: Any, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    item = _editable(caller, list_id)
    fields = _validated(caller, payload, current=item)
    actions: list[Any] = [getattr(TargetListModel, name).set(value) for name, value in fields.items()]
    actions.append(TargetListModel.updated_at.set(clock.now()))
    try:
        # The owner must still be the one the rights were checked against.
        item.update(
            actions=actions,
            condition=TargetListModel.list_id.exists() & (TargetListModel.user_id == int(item.user_id)),
        )
    except UpdateError as exc:
        raise Conflict("the target list changed or was deleted meanwhile; load it again") from exc
    return public_view(item, caller)


PURGE_PACKAGE = 5000  # a deleted list's members removed by one call or one queued job


def delete(caller: Caller, list_id: str) -> None:
    """Delete the list at once (every read starts from the list, so its members are never read
    again), then its members a package at a time (`purge_members`)."""
    item = _editable(caller, list_id)
    try:
        item.delete(condition=TargetListModel.list_id.exists())
    except DeleteError as exc:
        raise NotFound("no such target list", field="list_id") from exc
    purge_members(caller.account_id, list_id)


def purge_members(account_id: int, list_id: str) -> str:
    """Remove up to `PURGE_PACKAGE` members of a deleted list (BatchWriteItem, 25 to a
    request; no transaction) and, when that many went, queue a campaign-queue job that removes
    the next package (the campaigns function). Safe to repeat: a member removed twice is no
    harm, and a repeated job finds fewer or none; the members of a list that exists are never
    touched. What it did, for the log."""
    try:
        TargetListModel.get(int(account_id), list_id, consistent_read=True, attributes_to_get=["list_id"])
        return "the list exists"
    except DoesNotExist:
        pass
    key = target_list_key(int(account_id), list_id)
    removed = 0
    with TargetListMemberModel.batch_write() as batch:
        for member in TargetListMemberModel.query(
            key, limit=PURGE_PACKAGE, attributes_to_get=["list_key", "member"]
        ):
            batch.delete(member)
            removed += 1
    if removed < PURGE_PACKAGE:
        return f"removed {removed}"
    from mailer_core.events.campaign_jobs import CampaignJob, enqueue  # cold start: the SQS client

    enqueue(CampaignJob(int(account_id), list_id, "purge_list"))
    return f"removed {removed}, the next package queued"


# -- members -------------------------------------------------------------------------------


def member_view(member: TargetListMemberModel) -> dict[str, Any]:
    out: dict[str, Any] = {"member": str(member.member), "added_at": member.added_at.isoformat()}
    if member.entity_type is not None:
        out.update(entity_type=str(member.entity_type), entity_id=int(member.entity_id or 0))
    else:
        out.update(address=str(member.address or member.member), name=member.name)
    return out


def members(caller: Caller, list_id: str, *, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
    """A list's members in key order, a page at a time (`next_cursor` when more may follow)."""
    _load(caller, list_id)
    key = target_list_key(caller.account_id, list_id)
    last_key = (
        decode_cursor(
            cursor,
            keys=("list_key", "member"),
            types={"list_key": "S", "member": "S"},
            fixed={"list_key": {"S": key}},
        )
        if cursor
        else None
    )
    results = TargetListMemberModel.query(key, limit=limit, last_evaluated_key=last_key)
    items = [member_view(m) for m in results]
    next_key = results.last_evaluated_key
    return {"items": items, "next_cursor": encode_cursor(next_key) if next_key else None}


def member_from(value: Any, where: str) -> NewMember:
    """A member as the API takes it: {"address", "name"?} or {"entity_type", "id"}."""
    if not isinstance(value, dict):
        raise InvalidInput("must be an object with an address, or an entity_type and an id", field=where)
    if "entity_type" in value or "id" in value:
        validation.reject_unknown(value, ("entity_type", "id"))
        if value.get("entity_type") not in ENTITY_TYPES:
            raise InvalidInput(f"must be one of {', '.join(ENTITY_TYPES)}", field=f"{where}.entity_type")
        entity_id = value.get("id")
        if isinstance(entity_id, bool) or not isinstance(entity_id, int) or entity_id < 1:
            raise InvalidInput("must be a positive whole number", field=f"{where}.id")
        return NewMember(entity_type=str(value["entity_type"]), entity_id=entity_id)
    unknown = sorted(set(value) - {"address", "name"})
    if unknown:
        raise InvalidInput("unknown field; allowed are address, name", field=f"{where}.{unknown[0]}")
    address = validation.email_address(value.get("address"), f"{where}.address")
    name = value.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > MAX_MEMBER_NAME_CHARS):
        raise InvalidInput(
            f"must be text of at most {MAX_MEMBER_NAME_CHARS} characters", field=f"{where}.name"
        )
    return NewMember(address=address, name=(name or "").strip() or None)


def add(caller: Caller, list_id: str, payload: Any, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """`POST …/members`: {"members": [...]}; every member is checked before any is written."""
    _editable(caller, list_id)
    data = validation.require_object(payload)
    validation.reject_unknown(data, ("members",))
    raw = data.get("members")
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("must be a non-empty list of members", field="members")
    if len(raw) > MAX_MEMBERS_PER_REQUEST:
        raise InvalidInput(f"may hold at most {MAX_MEMBERS_PER_REQUEST} members", field="members")
    new = [member_from(value, f"members[{n}]") for n, value in enumerate(raw)]
    done = add_members(caller.account_id, list_id, new, clock=clock)
    return {"added": done.added, "already_members": done.already, "list": get(caller, list_id)}


def add_members(
    account_id: int, list_id: str, members: Iterable[NewMember | str], *, clock: Clock = SYSTEM_CLOCK
) -> Added:
    """Add members (addresses as text, or `NewMember`s) to a list of the account, 100 at a time,
    without holding them all; the list's count goes up by the members actually new. Callers check
    who may change the list (a campaign's log made into a list is the campaign owner's)."""
    key = target_list_key(account_id, list_id)
    added = already = 0
    stream = iter(members)
    while chunk := list(islice(stream, _GET_BATCH)):
        unique = {m.key: m for m in (NewMember(address=c) if isinstance(c, str) else c for c in chunk)}
        present = {
            str(found.member)
            for found in TargetListMemberModel.batch_get(
                [(key, k) for k in unique], attributes_to_get=["list_key", "member"]
            )
        }
        fresh = [m for k, m in unique.items() if k not in present]
        already += len(chunk) - len(fresh)
        now = clock.now()
        with TargetListMemberModel.batch_write() as batch:
            for m in fresh:
                batch.save(
                    TargetListMemberModel(
                        key,
                        m.key,
                        address=m.address.strip() if m.address else None,
                        name=m.name,
                        entity_type=m.entity_type,
                        entity_id=m.entity_id,
                        added_at=now,
                    )
                )
        if fresh:
            _count(account_id, list_id, len(fresh), clock)
        added += len(fresh)
    return Added(added=added, already=already)


def _count(account_id: int, list_id: str, delta: int, clock: Clock) -> None:
    try:
        TargetListModel(account_id, list_id).update(
            actions=[TargetListModel.members.add(delta), TargetListModel.updated_at.set(clock.now())],
            condition=TargetListModel.list_id.exists(),
        )
    except UpdateError as exc:
        raise NotFound("no such target list", field="list_id") from exc


def member_key(raw: str) -> str:
    """A member as the path names it: `leads:123` or an address (any case)."""
    text = raw.strip()
    return text if _ENTITY_KEY.fullmatch(text) else text.lower()


def remove_member(caller: Caller, list_id: str, member: str, *, clock: Clock = SYSTEM_CLOCK) -> None:
    _editable(caller, list_id)
    key = member_key(member)
    if not key or len(key) > 400:
        raise NotFound("no such member", field="member")
    try:
        TargetListMemberModel(target_list_key(caller.account_id, list_id), key).delete(
            condition=TargetListMemberModel.member.exists()
        )
    except DeleteError as exc:
        raise NotFound("no such member", field="member") from exc
    _count(caller.account_id, list_id, -1, clock)


# -- CSV import ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    row: int
    reason: str
    value: str

    def to_json(self) -> dict[str, Any]:
        return {"row": self.row, "reason": self.reason, "value": self.value}


@dataclass
class CsvRows:
    """A CSV file read: its good rows (row number, member) and its refused rows."""

    good: list[tuple[int, NewMember]]
    refused: list[Refused]
    rows: int


def _delimiter(header: str) -> str:
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _column(header: list[str], names: set[str]) -> int | None:
    for n, title in enumerate(header):
        if title.strip().strip('"').lower() in names:
            return n
    return None


def read_csv(text: str) -> CsvRows:
    """The rows of a CSV import, checked (see the module's docstring); refuses the whole file
    (422 naming `csv`) when it has no header with an email column or too many rows."""
    if len(text.encode("utf-8")) > IMPORT_BYTES:
        raise limits.too_large("a CSV import", field="csv", limit_bytes=IMPORT_BYTES)
    text = text.lstrip("\ufeff")
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    if not first_line:
        raise InvalidInput("the file is empty: it needs a header row with an email column", field="csv")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(first_line))
    rows: Iterator[list[str]] = iter(reader)
    header: list[str] = []
    for header in rows:
        if any(cell.strip() for cell in header):
            break
    email_at = _column(header, _EMAIL_HEADERS)
    if email_at is None:
        raise InvalidInput(
            "the header row needs an email column (email, e-mail, address …)",
            field="csv",
            reason="no_email_column",
        )
    name_at = _column(header, _NAME_HEADERS)
    good: list[tuple[int, NewMember]] = []
    refused: list[Refused] = []
    first_row: dict[str, int] = {}
    count = 0
    for cells in rows:
        count += 1
        if count > IMPORT_ROWS:
            raise PayloadTooLarge(
                f"a CSV import may have up to {IMPORT_ROWS} rows", field="csv", limit_rows=IMPORT_ROWS
            )
        row = reader.line_num
        value = cells[email_at].strip() if email_at < len(cells) else ""
        if not value:
            refused.append(Refused(row, "empty", ""))
            continue
        try:
            address = validation.email_address(value, "csv")
        except InvalidInput:
            refused.append(Refused(row, "bad_address", value[:254]))
            continue
        if address.lower() in first_row:
            refused.append(Refused(row, "duplicate", address))
            continue
        first_row[address.lower()] = row
        name = (
            cells[name_at].strip()[:MAX_MEMBER_NAME_CHARS]
            if name_at is not None and name_at < len(cells)
            else ""
        )
        good.append((row, NewMember(address=address, name=name or None)))
    return CsvRows(good=good, refused=refused, rows=count)


def import_csv(caller: Caller, list_id: str, text: str, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """Import a CSV file's good rows into the list; the report, or a 422 carrying it when rows
    were refused (the good ones are imported all the same)."""
    _editable(caller, list_id)
    parsed = read_csv(text)
    done = add_members(caller.account_id, list_id, (m for _, m in parsed.good), clock=clock)
    report: dict[str, Any] = {
        "rows": parsed.rows,
        "imported": len(parsed.good),
        "added": done.added,
        "already_members": done.already,
        "refused_count": len(parsed.refused),
        "refused": [r.to_json() for r in parsed.refused[:REPORTED_ROWS]],
        "list": get(caller, list_id),
    }
    if parsed.refused:
        raise InvalidInput(
            f"{len(parsed.refused)} of {parsed.rows} rows were refused (see report.refused); "
            f"the other {len(parsed.good)} were imported",
            field="csv",
            reason="rows_refused",
            report=report,
        )
    return report
