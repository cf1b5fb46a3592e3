"""The stand-in's OAuth 2.0 server: `POST /oauth2/access_token` as Kommo answers it.

- An integration is registered with its client id, secret and redirect URI
  (`register_integration`); `issue_code` plays the administrator pressing "Install": it
  returns the authorization code Kommo would put in the redirect.
- `authorization_code`: the code must be the integration's, unused and younger than 20
  minutes (by the stand-in's clock), and the redirect URI must be the registered one; a code
  works once.
- `refresh_token`: the refresh token must be the newest of its grant. Every refresh issues a
  new access token (24 h) and a new refresh token (3 months) and retires the old refresh
  token: sending it again answers 400, as Kommo does. Earlier access tokens keep working
  until they expire.
- Errors are problem+json in the shape of Kommo's OAuth errors (`title`, `type`, `status`,
  `detail`, `hint`): 400 for a bad grant, 401 for a wrong client id or secret.

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
_ERROR_TYPE = "https://developers.kommo.com/docs/oauth-errors"
_INVALID_GRANT = (
    "The provided authorization grant (e.g., authorization code, resource owner credentials) or "
    "refresh token is invalid, expired, revoked, does not match the redirection URI used in the "
    "authorization request, or was issued to another client."
)


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


def _problem(status: int, title: str, detail: str, hint: str) -> tuple[int, dict[str, Any]]:
    return status, {"title": title, "type": _ERROR_TYPE, "status": status, "detail": detail, "hint": hint}


def _invalid_grant(hint: str) -> tuple[int, dict[str, Any]]:
    return _problem(400, "Bad Request", _INVALID_GRANT, hint)


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
            return _problem(401, "Unauthorized", "Client authentication failed", "invalid_client")
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
                return _invalid_grant("Token has been revoked")
            if grant.client_id != integration.client_id:
                return _invalid_grant("Token is not linked to the client")
            if now > grant.refresh_expires_at:
                return _invalid_grant("Token has expired")
            if body.get("redirect_uri") != integration.redirect_uri:
                return _invalid_grant("Invalid redirect URI")
            return 200, self._issue(grant.client_id, grant.user_id, now, previous=token)
        return _problem(400, "Bad Request", "The authorization grant type is not supported", "grant_type")

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
