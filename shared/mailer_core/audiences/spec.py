"""An audience: who a campaign writes to, as the API takes it and as a campaign stores it.

```json
{"entity_type": "leads", "ids": [1, 2], "filter": {"pipeline_id": 7, "status_ids": [70],
 "responsible_user_ids": [5], "tags": ["VIP"]}, "target_lists": ["01J…"],
 "exclude_lists": ["01J…"], "contacts": "main"}
```

At least one source (`ids`, `filter`, `target_lists`); `entity_type` (leads by default) is
what `ids` and `filter` select; `contacts` says which contacts of a lead or company receive
the email (`kommo.contacts`: "main" or "all"). Kommo documents a filter by stage
(`filter[statuses]`, with its pipeline) and by pipeline for leads only, and by responsible
user for leads, contacts and companies; it documents no filter by tag, so `tags` keeps the
entities the other filter found that carry one of these tags (read from the entity itself).
Every condition is checked again on what Kommo returns (`KommoFilter.meets_kommos_part`).
A filter must name at least one condition. Target and exclusion lists must exist in the
account (and be visible to the caller when there is one). Every refusal is `InvalidInput`
naming the field as `audience.<name>`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from mailer_core.accounts.actors import Acting
from mailer_core.base.errors import InvalidInput
from mailer_core.kommo.client import ENTITY_TYPES, EntityType
from mailer_core.kommo.contacts import WHICH
from mailer_core.store.models import TargetListModel

MAX_IDS = 100_000  # a Kommo list view's selection, "any number": bounded by the request size anyway
MAX_LISTS = 20  # target lists, and exclusion lists, per audience
MAX_FILTER_VALUES = 100  # stages, users or tags in one filter
MAX_TAG_CHARS = 100
_FILTER_FIELDS = ("pipeline_id", "status_ids", "responsible_user_ids", "tags")
_FIELDS = ("entity_type", "ids", "filter", "target_lists", "exclude_lists", "contacts")


@dataclass(frozen=True)
class KommoFilter:
    """A filter Kommo applies (`pipeline_id`, `status_ids`, `responsible_user_ids`), and the
    tags matched on what it returns."""

    pipeline_id: int | None = None
    status_ids: tuple[int, ...] = ()
    responsible_user_ids: tuple[int, ...] = ()
    tags: tuple[str, ...] = ()

    def params(self) -> list[tuple[str, str]]:
        """The query parameters of `GET /api/v4/{entities}` for this filter, in Kommo's words
        (amoCRM's filters-api page): `filter[statuses][n][pipeline_id]` and
        `filter[statuses][n][status_id]` for stages, `filter[pipeline_id][]` for a whole
        pipeline, `filter[responsible_user_id][]`."""
        out: list[tuple[str, str]] = []
        if self.status_ids:
            for n, status_id in enumerate(self.status_ids):
                out += [
                    (f"filter[statuses][{n}][pipeline_id]", str(self.pipeline_id)),
                    (f"filter[statuses][{n}][status_id]", str(status_id)),
                ]
        elif self.pipeline_id is not None:
            out.append(("filter[pipeline_id][]", str(self.pipeline_id)))
        out += [("filter[responsible_user_id][]", str(u)) for u in self.responsible_user_ids]
        return out

    def meets_kommos_part(self, entity: Mapping[str, Any]) -> bool:
        """Whether an entity Kommo returned meets the conditions Kommo was asked to apply,
        checked again on the entity itself: Kommo's API filtering is an option of the account,
        and an account without it could answer with its whole list."""
        if self.pipeline_id is not None and entity.get("pipeline_id") != self.pipeline_id:
            return False
        if self.status_ids and entity.get("status_id") not in self.status_ids:
            return False
        return not self.responsible_user_ids or entity.get("responsible_user_id") in self.responsible_user_ids

    def keeps(self, entity: Mapping[str, Any]) -> bool:
        """Whether an entity meets the whole filter: Kommo's part, and one of the tags (any of
        them, without case; Kommo cannot filter by tag)."""
        if not self.meets_kommos_part(entity):
            return False
        if not self.tags:
            return True
        wanted = {t.casefold() for t in self.tags}
        tags = (entity.get("_embedded") or {}).get("tags") or []
        return any(str(t.get("name") or "").casefold() in wanted for t in tags)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.pipeline_id is not None:
            out["pipeline_id"] = self.pipeline_id
        for name in ("status_ids", "responsible_user_ids", "tags"):
            if getattr(self, name):
                out[name] = list(getattr(self, name))
        return out


@dataclass(frozen=True)
class Audience:
    """A parsed audience (see the module's docstring)."""

    entity_type: EntityType = "leads"
    ids: tuple[int, ...] = ()
    filter: KommoFilter | None = None
    target_lists: tuple[str, ...] = ()
    exclude_lists: tuple[str, ...] = ()
    contacts: str = "main"

    def to_json(self) -> dict[str, Any]:
        """The audience as the API takes it (and `from_json` reads it back)."""
        out: dict[str, Any] = {"entity_type": self.entity_type, "contacts": self.contacts}
        if self.ids:
            out["ids"] = list(self.ids)
        if self.filter is not None:
            out["filter"] = self.filter.to_json()
        if self.target_lists:
            out["target_lists"] = list(self.target_lists)
        if self.exclude_lists:
            out["exclude_lists"] = list(self.exclude_lists)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Audience:
        """An audience stored with `to_json`, read back without checking the lists again."""
        return _parsed(dict(data))


def parse(account_id: int, payload: Any, *, who: Acting | None = None) -> Audience:
    """The audience in `payload`, checked: every refusal names `audience.<field>`. Target and
    exclusion lists must be the account's (and ones `who` may see, when given)."""
    if not isinstance(payload, dict):
        raise InvalidInput("must be an object", field="audience")
    audience = _parsed(payload)
    _check_lists(account_id, audience.target_lists, "target_lists", who)
    _check_lists(account_id, audience.exclude_lists, "exclude_lists", who)
    return audience


def _parsed(payload: dict[str, Any]) -> Audience:
    unknown = sorted(set(payload) - set(_FIELDS))
    if unknown:
        raise InvalidInput(f"unknown field; allowed are {', '.join(_FIELDS)}", field=f"audience.{unknown[0]}")
    entity_type = payload.get("entity_type", "leads")
    if entity_type not in ENTITY_TYPES:
        raise InvalidInput(f"must be one of {', '.join(ENTITY_TYPES)}", field="audience.entity_type")
    contacts = payload.get("contacts", "main")
    if contacts not in WHICH:
        raise InvalidInput("must be main or all", field="audience.contacts")
    ids = _integers(payload.get("ids"), "audience.ids", MAX_IDS)
    kommo_filter = _filter(payload.get("filter"), cast(EntityType, entity_type))
    target_lists = _list_ids(payload.get("target_lists"), "audience.target_lists")
    exclude_lists = _list_ids(payload.get("exclude_lists"), "audience.exclude_lists")
    if not ids and kommo_filter is None and not target_lists:
        raise InvalidInput(
            "the audience is empty: give ids, a filter or target lists", field="audience", reason="empty"
        )
    return Audience(
        entity_type=cast(EntityType, entity_type),
        ids=tuple(dict.fromkeys(ids)),
        filter=kommo_filter,
        target_lists=target_lists,
        exclude_lists=exclude_lists,
        contacts=str(contacts),
    )


def _integers(value: Any, where: str, most: int) -> list[int]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput("must be a list of ids", field=where)
    if len(value) > most:
        raise InvalidInput(f"may hold at most {most} values", field=where)
    for n, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, int) or item < 1:
            raise InvalidInput("must be a positive whole number", field=f"{where}[{n}]")
    return list(value)


def _filter(value: Any, entity_type: EntityType) -> KommoFilter | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInput("must be an object", field="audience.filter")
    unknown = sorted(set(value) - set(_FILTER_FIELDS))
    if unknown:
        raise InvalidInput(
            f"unknown filter; allowed are {', '.join(_FILTER_FIELDS)}", field=f"audience.filter.{unknown[0]}"
        )
    pipeline = value.get("pipeline_id")
    if pipeline is not None and (isinstance(pipeline, bool) or not isinstance(pipeline, int) or pipeline < 1):
        raise InvalidInput("must be a pipeline id", field="audience.filter.pipeline_id")
    statuses = _integers(value.get("status_ids"), "audience.filter.status_ids", MAX_FILTER_VALUES)
    users = _integers(
        value.get("responsible_user_ids"), "audience.filter.responsible_user_ids", MAX_FILTER_VALUES
    )
    tags = _tags(value.get("tags"))
    if entity_type != "leads" and (pipeline is not None or statuses):
        field_name = "pipeline_id" if pipeline is not None else "status_ids"
        raise InvalidInput(
            "Kommo filters only leads by pipeline and stage", field=f"audience.filter.{field_name}"
        )
    if statuses and pipeline is None:
        raise InvalidInput("a stage is named with its pipeline", field="audience.filter.pipeline_id")
    if pipeline is None and not users and not tags:
        raise InvalidInput("the filter names no condition", field="audience.filter")
    return KommoFilter(
        pipeline_id=pipeline,
        status_ids=tuple(dict.fromkeys(statuses)),
        responsible_user_ids=tuple(dict.fromkeys(users)),
        tags=tags,
    )


def _tags(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_FILTER_VALUES:
        raise InvalidInput(
            f"must be a list of at most {MAX_FILTER_VALUES} tag names", field="audience.filter.tags"
        )
    out: list[str] = []
    for n, tag in enumerate(value):
        if not isinstance(tag, str) or not tag.strip() or len(tag) > MAX_TAG_CHARS:
            raise InvalidInput("must be a tag's name", field=f"audience.filter.tags[{n}]")
        out.append(tag.strip())
    return tuple(dict.fromkeys(out))


def _list_ids(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_LISTS:
        raise InvalidInput(f"must be a list of at most {MAX_LISTS} target list ids", field=where)
    for n, item in enumerate(value):
        if not isinstance(item, str) or not item or len(item) > 64 or not item.isalnum():
            raise InvalidInput("must be a target list id", field=f"{where}[{n}]")
    return tuple(dict.fromkeys(value))


def _check_lists(account_id: int, list_ids: Sequence[str], name: str, who: Acting | None) -> None:
    if not list_ids:
        return
    found = {
        str(item.list_id): item
        for item in TargetListModel.batch_get([(int(account_id), list_id) for list_id in list_ids])
    }
    for n, list_id in enumerate(list_ids):
        item = found.get(list_id)
        if item is None or (who is not None and not visible_to(who, item)):
            raise InvalidInput("no such target list", field=f"audience.{name}[{n}]", reason="unknown_list")


def visible_to(who: Acting, item: TargetListModel) -> bool:
    """A user sees their own lists and the public ones; an administrator (or Mailer acting for
    the account) every list of the account."""
    return who.account_wide or int(item.user_id) == who.user_id or bool(item.is_public)
