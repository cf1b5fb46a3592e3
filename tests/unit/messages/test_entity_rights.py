"""Kommo's view rights over an entity: all, the user's group, their own, none; admins see all."""

from __future__ import annotations

from typing import Any

import pytest
from mailer_core.messages.entity_rights import may_view, needs_entity


def user(user_id: int, view: str, *, group: int | None = None, admin: bool = False) -> dict[str, Any]:
    return {"id": user_id, "rights": {"is_admin": admin, "group_id": group, "leads": {"view": view}}}


@pytest.mark.parametrize(
    ("who", "responsible", "allowed"),
    [
        (user(1, "A"), user(2, "A"), True),
        (user(1, "M"), user(1, "M"), True),
        (user(1, "M"), user(2, "A"), False),
        (user(1, "G", group=7), user(2, "A", group=7), True),
        (user(1, "G", group=7), user(2, "A", group=8), False),
        (user(1, "G"), user(2, "A"), False),  # no group: only a group may share
        (user(1, "D"), user(1, "M"), False),
        (user(1, "D", admin=True), user(2, "A"), True),
        (user(1, "M"), None, False),  # a responsible user Kommo does not list
        ({"id": 1, "rights": {}}, user(1, "A"), False),  # no rights given: none
    ],
)
def test_who_may_view_a_lead(who: dict[str, Any], responsible: dict[str, Any] | None, allowed: bool) -> None:
    assert may_view(who, "leads", responsible) is allowed


def test_only_own_and_group_rights_need_the_entity_read() -> None:
    assert [needs_entity(user(1, v), "leads") for v in "AGMD"] == [False, True, True, False]
    assert not needs_entity(user(1, "M", admin=True), "leads")
