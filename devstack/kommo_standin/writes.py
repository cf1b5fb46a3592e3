"""The stand-in's writes: add, update, complex add and link of entities; tasks and notes.

Part of the Kommo stand-in (devstack/kommo_standin.py): `KommoStandIn` inherits these
handlers. A write is all or nothing: every element of a batch is checked on working copies
before any entity changes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from mailer_core.base.clock import Clock

from devstack.kommo_standin.shapes import (
    _COMMON_WRITE_FIELDS,
    _SINGLE_VALUE_TYPES,
    _WRITE_FIELDS,
    CLOSED_STATUSES,
    ENTITY_TYPES,
    MAX_COMPLEX_LEADS,
    MAX_WRITE_BATCH,
    NOTE_TYPES,
    Problem,
    Response,
    _field_value,
    _int,
    _not_implemented,
    _Request,
    validation_problem,
)


class StandInWrites:
    """The write handlers; the state they change is set up by `KommoStandIn.__init__`."""

    clock: Clock
    _account: dict[str, Any]
    _users: dict[int, dict[str, Any]]
    _task_types: list[dict[str, Any]]
    _pipelines: dict[int, dict[str, Any]]
    _custom_fields: dict[str, list[dict[str, Any]]]
    _entities: dict[str, dict[int, dict[str, Any]]]
    _tags: dict[str, dict[int, dict[str, Any]]]
    _tasks: list[dict[str, Any]]
    _notes: dict[str, list[dict[str, Any]]]
    _last_ids: dict[str, int]

    def _links(self, path: str) -> dict[str, Any]:
        raise NotImplementedError

    def _new_id(self, kind: str) -> int:
        self._last_ids[kind] += 1
        return self._last_ids[kind]

    def _now(self) -> int:
        return int(self.clock.timestamp())

    @staticmethod
    def _batch(body: Any) -> list[dict[str, Any]]:
        if not isinstance(body, list) or not body:
            raise Problem(400, "Bad Request", "the body must be a non-empty JSON array")
        if len(body) > MAX_WRITE_BATCH:
            raise Problem(400, "Bad Request", f"at most {MAX_WRITE_BATCH} entities per request")
        for item in body:
            if not isinstance(item, dict):
                raise Problem(400, "Bad Request", "every element of the array must be an object")
        return body

    def _patch_entity(self, req: _Request, etype: str, id: str) -> Response:
        if not isinstance(req.body, dict):
            raise Problem(400, "Bad Request", "the body must be a JSON object")
        entity = self._entities[etype].get(int(id))
        if entity is None:
            raise Problem(404, "Not Found", f"no {etype} entity with id {id}")
        updated = self._apply(etype, copy.deepcopy(entity), req.body, req.user_id, "0", "")
        self._entities[etype][updated["id"]] = updated
        return Response(
            200,
            {
                "id": updated["id"],
                "updated_at": updated["updated_at"],
                "_links": self._links(f"/api/v4/{etype}/{updated['id']}"),
            },
        )

    def _patch_entities(self, req: _Request, etype: str) -> Response:
        items = self._batch(req.body)
        working: dict[int, dict[str, Any]] = {}
        answers = []
        for index, item in enumerate(items):
            request_id = str(item.get("request_id", index))
            entity_id = _int(item.get("id"), f"{index}.id", request_id=request_id)
            current = working.get(entity_id) or self._entities[etype].get(entity_id)
            if current is None:
                raise validation_problem(
                    f"{index}.id", "NotFound", f"no entity with id {entity_id}", request_id
                )
            working[entity_id] = self._apply(
                etype, copy.deepcopy(current), item, req.user_id, request_id, f"{index}."
            )
            answers.append(
                {
                    "id": entity_id,
                    "updated_at": working[entity_id]["updated_at"],
                    "request_id": request_id,
                    "_links": self._links(f"/api/v4/{etype}/{entity_id}"),
                }
            )
        self._entities[etype].update(working)
        return Response(200, {"_links": self._links(req.path), "_embedded": {etype: answers}})

    def _add_entities(self, req: _Request, etype: str) -> Response:
        items = self._batch(req.body)
        created: list[dict[str, Any]] = []
        answers = []
        for index, item in enumerate(items):
            request_id = str(item.get("request_id", index))
            entity = self._new_entity(etype, item, req.user_id, request_id, f"{index}.")
            created.append(entity)
            answers.append(
                {
                    "id": entity["id"],
                    "request_id": request_id,
                    "_links": self._links(f"/api/v4/{etype}/{entity['id']}"),
                }
            )
        for entity in created:
            self._entities[etype][entity["id"]] = entity
        return Response(200, {"_links": self._links(req.path), "_embedded": {etype: answers}})

    def _new_entity(
        self, etype: str, item: dict[str, Any], user_id: int, request_id: str, prefix: str
    ) -> dict[str, Any]:
        """A new lead, contact or company built from one add body (not stored yet)."""
        entity_id = self._new_id(etype)
        entity: dict[str, Any] = {
            "id": entity_id,
            "name": "",
            "responsible_user_id": user_id,
            "group_id": 0,
            "created_by": user_id,
            "updated_by": user_id,
            "created_at": self._now(),
            "updated_at": self._now(),
            "closest_task_at": None,
            "is_deleted": False,
            "custom_fields_values": None,
            "account_id": self._account["id"],
            "_embedded": {"tags": [], "contacts": [], "companies": []},
        }
        if etype == "leads":
            main = next(p for p in self._pipelines.values() if p.get("is_main"))
            first = next(s for s in main["_embedded"]["statuses"] if s["type"] == 0)
            entity.update(
                {
                    "price": 0,
                    "status_id": first["id"],
                    "pipeline_id": main["id"],
                    "loss_reason_id": None,
                    "closed_at": None,
                }
            )
        if etype == "contacts":
            entity.update({"first_name": "", "last_name": "", "is_unsorted": False})
        entity = self._apply(etype, entity, item, user_id, request_id, prefix, creating=True)
        if not entity["name"]:
            entity["name"] = f"{etype[:-1].capitalize()} #{entity_id}"
        return entity

    # Many branches on purpose: Kommo's documented checks of a complex add, in order.
    def _add_complex(self, req: _Request) -> Response:  # noqa: C901
        """`POST /api/v4/leads/complex`: leads with one new (or existing) contact and company each.

        Answers a plain JSON array `[{id, contact_id, company_id, request_id: [..], merged}]`;
        the stand-in does no duplicate control, so `merged` is always false.
        """
        items = self._batch(req.body)
        if len(items) > MAX_COMPLEX_LEADS:
            raise Problem(400, "Bad Request", f"at most {MAX_COMPLEX_LEADS} leads per request")
        new: dict[str, list[dict[str, Any]]] = {"leads": [], "contacts": [], "companies": []}
        answers = []
        for index, item in enumerate(items):
            request_id = str(item.get("request_id", index))
            prefix = f"{index}."
            embedded = item.get("_embedded") or {}
            if not isinstance(embedded, dict):
                raise validation_problem(
                    f"{prefix}_embedded", "InvalidType", "This value should be of type object.", request_id
                )
            linked: dict[str, int | None] = {"contacts": None, "companies": None}
            for key in ("companies", "contacts"):
                refs = embedded.get(key) or []
                if not isinstance(refs, list) or len(refs) > 1:
                    raise validation_problem(
                        f"{prefix}_embedded.{key}",
                        "InvalidType",
                        "At most one entity of each kind",
                        request_id,
                    )
                if not refs:
                    continue
                ref = refs[0]
                if not isinstance(ref, dict):
                    raise validation_problem(
                        f"{prefix}_embedded.{key}.0",
                        "InvalidType",
                        "This value should be of type object.",
                        request_id,
                    )
                if set(ref) == {"id"}:
                    if ref["id"] not in self._entities[key]:
                        raise validation_problem(
                            f"{prefix}_embedded.{key}.0.id",
                            "NotFound",
                            "The entity was not found",
                            request_id,
                        )
                    linked[key] = ref["id"]
                    continue
                body = {k: v for k, v in ref.items() if k != "_embedded"}
                entity = self._new_entity(key, body, req.user_id, request_id, f"{prefix}_embedded.{key}.0.")
                new[key].append(entity)
                linked[key] = entity["id"]
            lead_body = {k: v for k, v in item.items() if k != "_embedded"}
            if "tags" in embedded:
                lead_body["_embedded"] = {"tags": embedded["tags"]}
            lead = self._new_entity("leads", lead_body, req.user_id, request_id, prefix)
            contact_id, company_id = linked["contacts"], linked["companies"]
            if contact_id is not None:
                lead["_embedded"]["contacts"] = [{"id": contact_id, "is_main": True}]
            if company_id is not None:
                lead["_embedded"]["companies"] = [{"id": company_id}]
            new["leads"].append(lead)
            answers.append(
                {
                    "id": lead["id"],
                    "contact_id": contact_id,
                    "company_id": company_id,
                    "request_id": [request_id],
                    "merged": False,
                }
            )
            if contact_id is not None and company_id is not None:
                contact = next((c for c in new["contacts"] if c["id"] == contact_id), None)
                if contact is not None:
                    contact["_embedded"]["companies"] = [{"id": company_id}]
        for etype, entities in new.items():
            for entity in entities:
                self._entities[etype][entity["id"]] = entity
        return Response(200, answers)

    def _link_lead(self, req: _Request, id: str) -> Response:
        """`POST /api/v4/leads/{id}/link`: link contacts (one of them main) or a company to a lead."""
        lead = self._entities["leads"].get(int(id))
        if lead is None:
            raise Problem(404, "Not Found", f"no leads entity with id {id}")
        items = self._batch(req.body)
        working = copy.deepcopy(lead["_embedded"])
        answers = []
        for index, item in enumerate(items):
            kind, target = item.get("to_entity_type"), item.get("to_entity_id")
            if kind not in ("contacts", "companies"):
                raise validation_problem(
                    f"{index}.to_entity_type", "NotSupportedChoice", "Unsupported entity type"
                )
            if target not in self._entities[kind]:
                raise validation_problem(f"{index}.to_entity_id", "NotFound", "The entity was not found")
            metadata = item.get("metadata") or {}
            if not isinstance(metadata, dict):
                raise validation_problem(
                    f"{index}.metadata", "InvalidType", "This value should be of type object."
                )
            if kind == "companies":
                working["companies"] = [{"id": target}]
                answers.append(self._link_answer(lead["id"], kind, target, None))
                continue
            main = bool(metadata.get("main_contact", metadata.get("is_main", False)))
            contacts = [c for c in working.get("contacts", []) if c["id"] != target]
            if main:
                contacts = [{**c, "is_main": False} for c in contacts]
            was = next((c for c in working.get("contacts", []) if c["id"] == target), None)
            main = main or bool(was and was.get("is_main")) or not contacts
            contacts.append({"id": target, "is_main": main})
            working["contacts"] = contacts
            answers.append(self._link_answer(lead["id"], kind, target, {"main_contact": main}))
        lead["_embedded"] = working
        lead["updated_at"] = self._now()
        body = {
            "_total_items": len(answers),
            "_links": self._links(req.path),
            "_embedded": {"links": answers},
        }
        return Response(200, body)

    def _link_answer(
        self, lead_id: int, kind: str, target: int, metadata: dict[str, Any] | None
    ) -> dict[str, Any]:
        return {
            "entity_id": lead_id,
            "entity_type": "leads",
            "to_entity_id": target,
            "to_entity_type": kind,
            "metadata": metadata,
        }

    def _lead_links(self, req: _Request, id: str) -> Response:
        """`GET /api/v4/leads/{id}/links`: the lead's contacts (with `main_contact`) and company."""
        lead = self._entities["leads"].get(int(id))
        if lead is None:
            return Response(204)
        links = [
            self._link_answer(lead["id"], "contacts", c["id"], {"main_contact": bool(c.get("is_main"))})
            for c in lead["_embedded"].get("contacts", [])
        ] + [
            self._link_answer(lead["id"], "companies", c["id"], None)
            for c in lead["_embedded"].get("companies", [])
        ]
        body = {"_total_items": len(links), "_links": self._links(req.path), "_embedded": {"links": links}}
        return Response(200, body)

    # Many branches on purpose: one branch per documented attribute.
    def _apply(  # noqa: C901
        self,
        etype: str,
        entity: dict[str, Any],
        patch: dict[str, Any],
        user_id: int,
        request_id: str,
        prefix: str,
        *,
        creating: bool = False,
    ) -> dict[str, Any]:
        """Apply one write body to a working copy of an entity; raise a 400 on any bad field."""

        def bad(path: str, detail: str, code: str = "InvalidType") -> Problem:
            return validation_problem(prefix + path, code, detail, request_id)

        allowed = _WRITE_FIELDS[etype] | _COMMON_WRITE_FIELDS | {"id"}
        for key in patch:
            if key not in allowed:
                raise _not_implemented(f"writing the field {key!r} of {etype}")
        if "name" in patch:
            if not isinstance(patch["name"], str):
                raise bad("name", "This value should be of type string.")
            entity["name"] = patch["name"]
        if etype == "contacts" and ("first_name" in patch or "last_name" in patch):
            for part in ("first_name", "last_name"):
                if part in patch:
                    if not isinstance(patch[part], str):
                        raise bad(part, "This value should be of type string.")
                    entity[part] = patch[part]
            if "name" not in patch:
                entity["name"] = f"{entity.get('first_name', '')} {entity.get('last_name', '')}".strip()
        if "price" in patch:
            entity["price"] = _int(patch["price"], prefix + "price", minimum=0, request_id=request_id)
        if "responsible_user_id" in patch:
            uid = _int(patch["responsible_user_id"], prefix + "responsible_user_id", request_id=request_id)
            if uid not in self._users:
                raise bad("responsible_user_id", "The user was not found", "NotFound")
            entity["responsible_user_id"] = uid
        if "loss_reason_id" in patch:
            entity["loss_reason_id"] = patch["loss_reason_id"]
        if etype == "leads" and ("status_id" in patch or "pipeline_id" in patch):
            self._move(entity, patch, bad)
        if "custom_fields_values" in patch:
            self._write_fields(etype, entity, patch["custom_fields_values"], bad)
        self._write_links_and_tags(etype, entity, patch, bad, creating)
        entity["updated_at"] = self._now()
        entity["updated_by"] = user_id
        return entity

    def _move(self, lead: dict[str, Any], patch: dict[str, Any], bad: Callable[..., Problem]) -> None:
        pipeline_id = patch.get("pipeline_id", lead["pipeline_id"])
        pipeline = self._pipelines.get(pipeline_id) if isinstance(pipeline_id, int) else None
        if pipeline is None:
            raise bad("pipeline_id", "The pipeline was not found", "NotFound")
        statuses = pipeline["_embedded"]["statuses"]
        if "status_id" in patch:
            status_id = patch["status_id"]
        elif pipeline_id != lead["pipeline_id"]:
            status_id = next(s["id"] for s in statuses if s["type"] == 0)
        else:
            status_id = lead["status_id"]
        status = next((s for s in statuses if s["id"] == status_id), None)
        if status is None:
            raise bad("status_id", "The status is not part of the pipeline", "NotSupportedChoice")
        if status["type"] == 1 and status_id != lead["status_id"]:
            raise bad("status_id", "A lead cannot be moved to the unsorted stage", "NotSupportedChoice")
        lead["pipeline_id"], lead["status_id"] = pipeline_id, status_id
        lead["closed_at"] = self._now() if status_id in CLOSED_STATUSES else None

    def _write_fields(
        self, etype: str, entity: dict[str, Any], raw: Any, bad: Callable[..., Problem]
    ) -> None:
        if not isinstance(raw, list):
            raise bad("custom_fields_values", "This value should be of type array.")
        current: list[dict[str, Any]] = list(entity.get("custom_fields_values") or [])
        for i, item in enumerate(raw):
            path = f"custom_fields_values.{i}"
            if not isinstance(item, dict):
                raise bad(path, "This value should be of type object.")
            definition = next(
                (
                    f
                    for f in self._custom_fields[etype]
                    if ("field_id" in item and f["id"] == item["field_id"])
                    or ("field_id" not in item and item.get("field_code") and f["code"] == item["field_code"])
                ),
                None,
            )
            if definition is None:
                raise bad(
                    f"{path}.field_id",
                    "The value you have provided is not part of the possible values",
                    "NotSupportedChoice",
                )
            values = item.get("values")
            position = next((n for n, v in enumerate(current) if v["field_id"] == definition["id"]), None)
            if position is not None:
                current.pop(position)
            if values in (None, []):
                continue
            if not isinstance(values, list):
                raise bad(f"{path}.values", "This value should be of type array.")
            if definition["type"] in _SINGLE_VALUE_TYPES and len(values) > 1:
                raise bad(f"{path}.values", "This field takes one value", "NotSupportedChoice")
            normalized = [
                _field_value(definition, v, f"{path}.values.{j}", bad) for j, v in enumerate(values)
            ]
            entry = {
                "field_id": definition["id"],
                "field_name": definition["name"],
                "field_code": definition["code"],
                "field_type": definition["type"],
                "values": normalized,
            }
            current.insert(len(current) if position is None else position, entry)
        entity["custom_fields_values"] = current or None

    # Many branches on purpose: Kommo's documented link and tag rules, in order.
    def _write_links_and_tags(  # noqa: C901
        self,
        etype: str,
        entity: dict[str, Any],
        patch: dict[str, Any],
        bad: Callable[..., Problem],
        creating: bool,
    ) -> None:
        embedded = patch.get("_embedded")
        links = entity["_embedded"]
        if embedded is not None:
            if not isinstance(embedded, dict):
                raise bad("_embedded", "This value should be of type object.")
            linkable = {"leads": {"contacts", "companies"}, "contacts": {"companies"}}.get(etype, set())
            for key in embedded:
                if key != "tags" and not (creating and key in linkable):
                    raise _not_implemented(f"_embedded.{key} on this write")
            if "tags" in embedded:
                tags = embedded["tags"]
                if tags is not None and not isinstance(tags, list):
                    raise bad("_embedded.tags", "This value should be of type array.")
                links["tags"] = [
                    self._tag(etype, t, f"_embedded.tags.{n}", bad) for n, t in enumerate(tags or [])
                ]
            for key in ("contacts", "companies"):
                if key in embedded and creating and key in linkable:
                    refs = embedded[key] or []
                    if not isinstance(refs, list):
                        raise bad(f"_embedded.{key}", "This value should be of type array.")
                    found = []
                    for n, ref in enumerate(refs):
                        ref_id = ref.get("id") if isinstance(ref, dict) else None
                        if ref_id not in self._entities[key]:
                            raise bad(f"_embedded.{key}.{n}.id", "The entity was not found", "NotFound")
                        is_main = bool(ref.get("is_main", n == 0))
                        found.append(
                            {"id": ref_id, "is_main": is_main} if key == "contacts" else {"id": ref_id}
                        )
                    links[key] = found
        for key, adding in (("tags_to_add", True), ("tags_to_delete", False)):
            if key not in patch:
                continue
            refs = patch[key]
            if not isinstance(refs, list):
                raise bad(key, "This value should be of type array.")
            for n, ref in enumerate(refs):
                if adding:
                    tag = self._tag(etype, ref, f"{key}.{n}", bad)
                    if all(t["id"] != tag["id"] for t in links["tags"]):
                        links["tags"].append(tag)
                elif isinstance(ref, dict):
                    links["tags"] = [
                        t
                        for t in links["tags"]
                        if not (
                            ("id" in ref and t["id"] == ref["id"])
                            or ("name" in ref and str(t["name"]).lower() == str(ref["name"]).lower())
                        )
                    ]
                else:
                    raise bad(f"{key}.{n}", "This value should be of type object.")

    def _tag(self, etype: str, ref: Any, path: str, bad: Callable[..., Problem]) -> dict[str, Any]:
        """Resolve `{"id": …}` or `{"name": …}` to a tag of the directory, creating a new name."""
        directory = self._tags[etype]
        if isinstance(ref, dict) and "id" in ref:
            if ref["id"] not in directory:
                raise bad(f"{path}.id", "The tag was not found", "NotFound")
            return dict(directory[ref["id"]])
        if isinstance(ref, dict) and isinstance(ref.get("name"), str) and ref["name"].strip():
            name = ref["name"].strip()
            for tag in directory.values():
                if tag["name"].lower() == name.lower():
                    return dict(tag)
            tag = {"id": self._new_id("tags"), "name": name, "color": ref.get("color")}
            directory[tag["id"]] = tag
            return dict(tag)
        raise bad(path, "A tag needs an id or a name")

    def _add_tasks(self, req: _Request) -> Response:
        items = self._batch(req.body)
        created, answers = [], []
        task_type_ids = {t["id"] for t in self._task_types}
        for index, item in enumerate(items):
            request_id = str(item.get("request_id", index))

            def bad(path: str, detail: str, code: str = "InvalidType", _rid: str = request_id) -> Problem:
                return validation_problem(path, code, detail, _rid)

            text = item.get("text")
            if not isinstance(text, str) or not text.strip():
                raise bad(f"{index}.text", "This value should not be blank.", "NotBlank")
            complete_till = _int(item.get("complete_till"), f"{index}.complete_till", request_id=request_id)
            entity_type, entity_id = item.get("entity_type"), item.get("entity_id")
            if entity_type is not None or entity_id is not None:
                if entity_type not in ENTITY_TYPES:
                    raise bad(f"{index}.entity_type", "Unsupported entity type", "NotSupportedChoice")
                if entity_id not in self._entities[entity_type]:
                    raise bad(f"{index}.entity_id", "The entity was not found", "NotFound")
            task_type_id = item.get("task_type_id", 1)
            if task_type_id not in task_type_ids:
                raise bad(f"{index}.task_type_id", "Unknown task type", "NotSupportedChoice")
            responsible = item.get("responsible_user_id", req.user_id)
            if responsible not in self._users:
                raise bad(f"{index}.responsible_user_id", "The user was not found", "NotFound")
            task = {
                "id": self._new_id("tasks"),
                "created_by": req.user_id,
                "updated_by": req.user_id,
                "created_at": self._now(),
                "updated_at": self._now(),
                "responsible_user_id": responsible,
                "group_id": 0,
                "entity_id": entity_id,
                "entity_type": entity_type,
                "duration": item.get("duration", 0),
                "is_completed": bool(item.get("is_completed", False)),
                "task_type_id": task_type_id,
                "text": text,
                "result": item.get("result") or [],
                "complete_till": complete_till,
                "account_id": self._account["id"],
            }
            created.append(task)
            answers.append(
                {
                    "id": task["id"],
                    "request_id": request_id,
                    "_links": self._links(f"/api/v4/tasks/{task['id']}"),
                }
            )
        self._tasks.extend(created)
        return Response(200, {"_links": self._links(req.path), "_embedded": {"tasks": answers}})

    def _add_notes(self, req: _Request, etype: str, id: str | None = None) -> Response:
        items = self._batch(req.body)
        created, answers = [], []
        for index, item in enumerate(items):
            request_id = str(item.get("request_id", index))

            def bad(path: str, detail: str, code: str = "InvalidType", _rid: str = request_id) -> Problem:
                return validation_problem(path, code, detail, _rid)

            entity_id = int(id) if id is not None else item.get("entity_id")
            if entity_id not in self._entities[etype]:
                raise bad(f"{index}.entity_id", "The entity was not found", "NotFound")
            note_type = item.get("note_type")
            if note_type not in NOTE_TYPES:
                raise bad(f"{index}.note_type", "Unsupported note type", "NotSupportedChoice")
            params = item.get("params")
            if not isinstance(params, dict):
                raise bad(f"{index}.params", "This value should be of type object.")
            needs = {"common": ("text",), "service_message": ("service", "text")}
            needs["extended_service_message"] = needs["service_message"]
            for key in needs.get(note_type, ()):
                if not isinstance(params.get(key), str) or not params[key]:
                    raise bad(f"{index}.params.{key}", "This value should not be blank.", "NotBlank")
            note = {
                "id": self._new_id("notes"),
                "entity_id": entity_id,
                "created_by": item.get("created_by", req.user_id),
                "updated_by": req.user_id,
                "created_at": self._now(),
                "updated_at": self._now(),
                "responsible_user_id": item.get("responsible_user_id", req.user_id),
                "group_id": 0,
                "note_type": note_type,
                "params": copy.deepcopy(params),
                "account_id": self._account["id"],
            }
            created.append(note)
            answers.append(
                {
                    "id": note["id"],
                    "entity_id": entity_id,
                    "request_id": request_id,
                    "_links": self._links(f"/api/v4/{etype}/notes/{note['id']}"),
                }
            )
        self._notes[etype].extend(created)
        return Response(200, {"_links": self._links(req.path), "_embedded": {"notes": answers}})
