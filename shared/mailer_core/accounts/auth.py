"""The widget's `X-Auth-Token`: who is calling, as Kommo vouches for it.

Kommo signs a short-lived JWT (HS256, key = the integration's client secret, `aud` = scheme
and host of the integration's redirect URI) and the widget sends it with every call. The
account and user come from this token only, never from the request body or query.

Time is passed in (`now`, epoch seconds) so that tests and the local stack control it:
PyJWT's own time checks are switched off and done here, with a small leeway for clock skew.
Failure reasons are short and never contain the token or any part of it.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt

from mailer_core.base.errors import MailerError, Unauthorized
from mailer_core.kommo.hosts import is_subdomain

if TYPE_CHECKING:
    from jwt.types import Options

ALGORITHM = "HS256"
LEEWAY_SECONDS = 30
DEFAULT_TTL_SECONDS = 1800  # Kommo's tokens live 30 minutes.
MAX_TOKEN_LENGTH = 8192
_DIGITS = re.compile(r"^[0-9]{1,19}$")
_TRUE = {"y", "yes", "1", "true"}
_FALSE = {"n", "no", "0", "false", ""}


class AuthNotConfigured(MailerError):
    """The client secret or the token audience is empty: the server's fault, not the caller's."""

    status = 500
    code = "server_misconfigured"


@dataclass(frozen=True)
class Caller:
    """The Kommo account and user a verified token speaks for."""

    account_id: int
    subdomain: str
    user_id: int
    is_admin: bool

    @property
    def account_wide(self) -> bool:
        """An administrator reaches every user's mailboxes and templates of the account."""
        return self.is_admin


def verify_widget_token(token: str | None, *, secret: str, audience: str, now: float) -> Caller:
    """Verify a widget token and return its caller; raise `Unauthorized` with a short reason."""
    _require_configuration(secret, audience)
    token = (token or "").strip()
    if not token:
        raise Unauthorized("token missing")
    if len(token) > MAX_TOKEN_LENGTH:
        raise Unauthorized("token too long")
    claims = _decode(token, secret)
    _check_audience(claims, audience)
    _check_times(claims, now)
    return Caller(
        account_id=_positive_int(claims, "account_id"),
        subdomain=_subdomain(claims),
        user_id=_positive_int(claims, "user_id"),
        is_admin=_boolean(claims, "is_admin"),
    )


def mint_widget_token(
    *,
    secret: str,
    audience: str,
    account_id: int,
    subdomain: str,
    user_id: int,
    is_admin: bool,
    now: float,
    ttl: int = DEFAULT_TTL_SECONDS,
    jti: str | None = None,
) -> str:
    """Sign a token with the claims Kommo sends (for the local stack and tests)."""
    _require_configuration(secret, audience)
    issued = int(now)
    claims: dict[str, Any] = {
        "iss": f"https://{subdomain}.kommo.com",
        "aud": audience,
        "jti": jti or str(uuid.uuid4()),
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl,
        "account_id": account_id,
        "subdomain": subdomain,
        "user_id": user_id,
        "is_admin": is_admin,
        "client_uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, audience)),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def _require_configuration(secret: str, audience: str) -> None:
    if not secret.strip():
        raise AuthNotConfigured("token verification is not configured: the Kommo client secret is empty")
    if not audience.strip():
        raise AuthNotConfigured("token verification is not configured: the Kommo redirect URI is empty")


def _decode(token: str, secret: str) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Unauthorized("token is malformed") from None
    if header.get("alg") != ALGORITHM:
        raise Unauthorized(f"token algorithm not allowed (only {ALGORITHM})")
    options: Options = {
        "verify_signature": True,
        "verify_aud": False,
        "verify_exp": False,
        "verify_nbf": False,
        "verify_iat": False,
        "verify_iss": False,
        "verify_sub": False,
        "verify_jti": False,
    }
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options=options)
    except jwt.InvalidSignatureError:
        raise Unauthorized("signature does not match") from None
    except jwt.InvalidAlgorithmError:
        raise Unauthorized(f"token algorithm not allowed (only {ALGORITHM})") from None
    except jwt.DecodeError:
        raise Unauthorized("token is malformed") from None
    except jwt.PyJWTError:
        raise Unauthorized("token is invalid") from None
    return claims


def _normalize_origin(value: str) -> str:
    return value.strip().rstrip("/").lower()


def _check_audience(claims: dict[str, Any], audience: str) -> None:
    """`aud` may be a string or a list (RFC 7519); one entry must name this integration."""
    aud = claims.get("aud")
    if aud is None:
        raise Unauthorized("claim aud missing")
    values = aud if isinstance(aud, list) else [aud]
    expected = _normalize_origin(audience)
    if not any(isinstance(v, str) and _normalize_origin(v) == expected for v in values):
        raise Unauthorized("token is for another integration (aud)")


def _number(claims: dict[str, Any], name: str, *, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise Unauthorized(f"claim {name} missing")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unauthorized(f"claim {name} is not a number")
    return float(value)


def _check_times(claims: dict[str, Any], now: float) -> None:
    exp = _number(claims, "exp", required=True)
    nbf = _number(claims, "nbf", required=False)
    iat = _number(claims, "iat", required=False)
    if exp is not None and exp <= now - LEEWAY_SECONDS:
        raise Unauthorized("token expired")
    if nbf is not None and nbf > now + LEEWAY_SECONDS:
        raise Unauthorized("token not yet valid")
    if iat is not None and iat > now + LEEWAY_SECONDS:
        raise Unauthorized("token issued in the future")


def _positive_int(claims: dict[str, Any], name: str) -> int:
    """Kommo sends ids as JSON numbers or as numeric strings."""
    value = claims.get(name)
    if value is None or value == "":
        raise Unauthorized(f"claim {name} missing")
    if isinstance(value, bool):
        raise Unauthorized(f"claim {name} is not an integer")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and _DIGITS.match(value.strip()):
        value = int(value.strip())
    if not isinstance(value, int) or value <= 0:
        raise Unauthorized(f"claim {name} is not an integer")
    return value


def _subdomain(claims: dict[str, Any]) -> str:
    value = claims.get("subdomain")
    if value is None or value == "":
        raise Unauthorized("claim subdomain missing")
    # The subdomain is put into Kommo API URLs: accept a bare DNS label only.
    if not isinstance(value, str) or not is_subdomain(value.strip()):
        raise Unauthorized("claim subdomain is not a valid subdomain")
    return value.strip().lower()


def _boolean(claims: dict[str, Any], name: str) -> bool:
    """Absent means False (no admin rights); Kommo may send a bool, "Y"/"N" or "1"/"0"."""
    value = claims.get(name)
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise Unauthorized(f"claim {name} is not a boolean")
