"""Names shared by the Kommo tests and their fixtures."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devstack.kommo_standin import seed
from devstack.kommo_standin.seed import Seed

TOKEN = "test-admin-token"
MANAGER_TOKEN = "test-manager-token"

# Kommo's token endpoint, in its own words, as integrators quote it (kommo-api.md; ufee/amoapi#26,
# Krukov/amocrm_api#41; amocrm/amocrm-api-php#123, #218, #315, #414).
OAUTH_PROBLEM = "https://developers.amocrm.ru/v3/errors/OAuthProblemJson"
WRONG_CLIENT_ANSWER = {  # a wrong client id or secret: no hint, no invalid_client
    "title": "Некорректный клиент",
    "type": OAUTH_PROBLEM,
    "status": 401,
    "detail": "Авторизация клиента не прошла",
}


def refused_grant(hint: str, status: int = 401) -> dict[str, Any]:
    """A refused grant or request: `hint` says why."""
    return {
        "hint": hint,
        "title": "Некорректный запрос",
        "type": OAUTH_PROBLEM,
        "status": status,
        "detail": "В запросе отсутствует ряд параметров или параметры невалидны",
    }


@dataclass
class Answer:
    """One raw HTTP answer of the stand-in: status, Content-Type and decoded JSON (None if empty)."""

    status: int
    content_type: str
    body: Any


Api = Callable[..., Answer]


def add_kommo_user(sample: Seed, user_id: int, name: str, email: str, *, view: str = "A") -> None:
    """A user of the demo account as Kommo knows them (the manager's rights, `view` for leads)."""
    user = copy.deepcopy(next(u for u in sample.users if u["id"] == seed.MANAGER_USER_ID))
    user.update(id=user_id, name=name, email=email)
    user["rights"]["leads"] = {**user["rights"]["leads"], "view": view}
    sample.users.append(user)
