"""The stand-in's OAuth 2.0 server: `POST /oauth2/access_token` as Kommo answers it.

- An integration is registered with its client id, secret and redirect URI
  (`register_integration`); `issue_code` plays the administrator pressing "Install": it
  returns the authorization code Kommo would put in the redirect.
- `authorization_code`: the code must be the integration's, unused and younger than 20
  minutes (by the stand-in's clock), and the redirect URI must be the registered one; a code
  works once.
- `refresh_token`: the refresh token must be the newest of its grant. Every refresh issues a
  new access token (24 h) and a new refresh token (3 months) and retires the old refresh
  token: sending it again answers 401 "Token has been revoked", as Kommo does. Earlier
  access tokens keep working until they expire.
- Errors are problem+json in Kommo's own words, as integrators quote them (kommo-api.md;
  amocrm-api-php #123, #315, #414; ufee/amoapi#26; Krukov/amocrm_api#41):
  - a wrong client id or secret: 401 `{"title": "Некорректный клиент", "type": …,
    "status": 401, "detail": "Авторизация клиента не прошла"}`, with no `hint` and no
    `invalid_client` anywhere;
  - a refused grant: `{"hint": <the cause>, "title": "Некорректный запрос", "type": …,
    "status": …, "detail": "В запросе отсутствует ряд параметров или параметры невалидны"}`,
    401 for a refresh token (revoked, expired, not linked to the client), 400 for a code
    or a request without what it needs (no report shows Kommo's status there; OAuth says 400).

Bodies may be JSON or form-encoded. Tokens are random; nothing here is secret.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

CODE_LIFETIME = 20 * 60
ACCESS_LIFETIME = 24 * 3600
REFRESH_LIFETIME = 90 * 24 * 3600
_ERROR_TYPE = "https://developers.amocrm.ru/v3/errors/OAuthProblemJson"
_BAD_REQUEST = "Некорректный запрос"
_BAD_REQUEST_DETAIL = "В запросе отсутствует ряд параметров или параметры невалидны"
WRONG_CLIENT = {
    "title": "Некорректный клиент",
    "type": _ERROR_TYPE,
    "status": 401,
    "detail": "Авторизация клиента не прошла",
}


@dataclass(frozen=True)
class Integration:
    client_id: str
    client_secret: str
    redirect_uri: str


@dataclass
class _Code:
    client_id: str
    user_id: int
    issued_at: float
    used: bool = False


@dataclass
class _Grant:
    """One chain of refreshes that started with one code; only its newest refresh token works."""

    client_id: str
    user_id: int
    refresh_token: str
    refresh_expires_at: float


@dataclass(frozen=True)
class AccessToken:
    client_id: str
    user_id: int
    expires_at: float


@dataclass(frozen=True)
class TokenCall:
    """One call of the token endpoint: which grant type, when, and what it answered."""

    grant_type: str
    time: float
    status: int
    refresh_token: str | None = field(default=None, repr=False)


def _invalid_grant(hint: str, status: int = 400) -> tuple[int, dict[str, Any]]:
    """A refused grant or request, in Kommo's words; `hint` says why."""
    body = {
        "hint": hint,
        "title": _BAD_REQUEST,
        "type": _ERROR_TYPE,
        "status": status,
        "detail": _BAD_REQUEST_DETAIL,
    }
    return status, body


def _refused_refresh(hint: str) -> tuple[int, dict[str, Any]]:
    return _invalid_grant(hint, status=401)


class StandInOAuth:
    """Codes, grants and access tokens of the stand-in's one account (not thread-safe: the stand-in locks)."""

    def __init__(self, default_user_id: int) -> None:
        self.default_user_id = default_user_id
        self.integrations: dict[str, Integration] = {}
        self._codes: dict[str, _Code] = {}
        self._grants: dict[str, _Grant] = {}  # by the grant's newest refresh token
        self._retired: set[str] = set()
        self.access_tokens: dict[str, AccessToken] = {}
        self.calls: list[TokenCall] = []

    def register(self, client_id: str, client_secret: str, redirect_uri: str) -> None:
        self.integrations[client_id] = Integration(client_id, client_secret, redirect_uri)

    def issue_code(self, client_id: str, now: float, user_id: int | None = None) -> str:
        if client_id not in self.integrations:
            raise ValueError(f"no integration {client_id!r} is registered")
        code = "def50200" + secrets.token_hex(48)
        self._codes[code] = _Code(client_id, user_id or self.default_user_id, now)
        return code

    def revoke_client(self, client_id: str) -> None:
        """What Kommo does when the integration is switched off: every grant and token of it ends."""
        self._grants = {k: g for k, g in self._grants.items() if g.client_id != client_id}
        self.access_tokens = {k: t for k, t in self.access_tokens.items() if t.client_id != client_id}

    def newest_refresh_token(self) -> str | None:
        """The refresh token that works now (the newest of the newest grant)."""
        grants = list(self._grants.values())
        return grants[-1].refresh_token if grants else None

    def token_endpoint(self, raw: bytes, content_type: str, now: float) -> tuple[int, dict[str, Any]]:
        body = _parse(raw, content_type)
        grant_type = str(body.get("grant_type") or "")
        status, answer = self._answer(body, grant_type, now)
        refresh = str(body.get("refresh_token")) if grant_type == "refresh_token" else None
        self.calls.append(TokenCall(grant_type, now, status, refresh))
        return status, answer

    def _answer(self, body: dict[str, Any], grant_type: str, now: float) -> tuple[int, dict[str, Any]]:
        integration = self.integrations.get(str(body.get("client_id") or ""))
        if integration is None or body.get("client_secret") != integration.client_secret:
            return 401, dict(WRONG_CLIENT)
        if grant_type == "authorization_code":
            code = self._codes.get(str(body.get("code") or ""))
            if code is None or code.client_id != integration.client_id:
                return _invalid_grant("Cannot decrypt the authorization code")
            if code.used:
                return _invalid_grant("Authorization code has been revoked")
            if now - code.issued_at > CODE_LIFETIME:
                return _invalid_grant("Authorization code has expired")
            if body.get("redirect_uri") != integration.redirect_uri:
                return _invalid_grant("Invalid redirect URI")
            code.used = True
            return 200, self._issue(integration.client_id, code.user_id, now, previous=None)
        if grant_type == "refresh_token":
            token = str(body.get("refresh_token") or "")
            grant = self._grants.get(token)
            if grant is None or token in self._retired:
                return _refused_refresh("Token has been revoked")
            if grant.client_id != integration.client_id:
                return _refused_refresh("Token is not linked to client")
            if now > grant.refresh_expires_at:
                return _refused_refresh("Token has expired")
            if body.get("redirect_uri") != integration.redirect_uri:
                return _invalid_grant("Invalid redirect URI")
            return 200, self._issue(grant.client_id, grant.user_id, now, previous=token)
        return _invalid_grant("The authorization grant type is not supported by the authorization server.")

    def _issue(self, client_id: str, user_id: int, now: float, previous: str | None) -> dict[str, Any]:
        access = "stand-in-access-" + secrets.token_urlsafe(24)
        refresh = "stand-in-refresh-" + secrets.token_urlsafe(24)
        if previous is not None:
            self._retired.add(previous)
            del self._grants[previous]
        self._grants[refresh] = _Grant(client_id, user_id, refresh, now + REFRESH_LIFETIME)
        self.access_tokens[access] = AccessToken(client_id, user_id, now + ACCESS_LIFETIME)
        return {
            "token_type": "Bearer",
            "expires_in": ACCESS_LIFETIME,
            "server_time": int(now),
            "access_token": access,
            "refresh_token": refresh,
        }


def _parse(raw: bytes, content_type: str) -> dict[str, Any]:
    text = raw.decode("utf-8", errors="replace")
    if "json" in content_type or text.lstrip().startswith("{"):
        try:
            body = json.loads(text)
        except json.JSONDecodeError:
            return {}
        return body if isinstance(body, dict) else {}
    return dict(parse_qsl(text, keep_blank_values=True))
