"""The widget's X-Auth-Token: Kommo's HS256 JWT, verified against an injected clock."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from mailer_core.accounts.auth import (
    LEEWAY_SECONDS,
    AuthNotConfigured,
    Caller,
    mint_widget_token,
    verify_widget_token,
)
from mailer_core.base.clock import FakeClock
from mailer_core.base.errors import Unauthorized

if TYPE_CHECKING:
    from jwt.types import Options

SECRET = "k" * 32 + "0123456789abcdef0123456789abcdef"  # Kommo secrets are 64 characters.
OTHER_SECRET = "z" * 64
AUDIENCE = "https://mailer.example.com"
NOW = FakeClock().timestamp()


def claims(**overrides: Any) -> dict[str, Any]:
    """The claims Kommo sends, issued at NOW for 30 minutes; None removes a claim."""
    base: dict[str, Any] = {
        "iss": "https://mailerdemo.kommo.com",
        "aud": AUDIENCE,
        "jti": "7c1c3a4e-5b7f-4f7e-9a52-0f4b8f0a1d2e",
        "iat": int(NOW),
        "nbf": int(NOW),
        "exp": int(NOW) + 1800,
        "account_id": 31234567,
        "subdomain": "mailerdemo",
        "user_id": 8765432,
        "is_admin": True,
        "client_uuid": "0f3a6b1e-2b51-4d8a-9a5e-3e5d1c9b7a10",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(payload, secret, algorithm=algorithm)


def verify(token: str | None, now: float = NOW) -> Caller:
    return verify_widget_token(token, secret=SECRET, audience=AUDIENCE, now=now)


def unsigned(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

    return ".".join([part(json.dumps(header).encode()), part(json.dumps(payload).encode()), part(signature)])


def reason_of(token: str | None, now: float = NOW) -> str:
    with pytest.raises(Unauthorized) as caught:
        verify(token, now)
    return caught.value.message


# ---------------------------------------------------------------- the happy path


def test_a_token_kommo_signed_for_this_integration_names_the_caller() -> None:
    caller = verify(sign(claims()))

    assert caller == Caller(account_id=31234567, subdomain="mailerdemo", user_id=8765432, is_admin=True)


def test_minted_token_carries_the_claims_kommo_sends_and_verifies() -> None:
    token = mint_widget_token(
        secret=SECRET,
        audience=AUDIENCE,
        account_id=5,
        subdomain="acme",
        user_id=7,
        is_admin=False,
        now=NOW,
        jti="fixed-jti",
    )

    wall_clock_free: Options = {"verify_exp": False, "verify_nbf": False, "verify_iat": False}
    payload = jwt.decode(token, SECRET, algorithms=["HS256"], audience=AUDIENCE, options=wall_clock_free)
    assert set(payload) >= {"iss", "aud", "jti", "iat", "nbf", "exp", "account_id", "subdomain", "user_id"}
    assert {"is_admin", "client_uuid"} <= set(payload)
    assert payload["jti"] == "fixed-jti"
    assert payload["iss"] == "https://acme.kommo.com"
    assert payload["exp"] - payload["iat"] == 1800
    assert verify(token) == Caller(account_id=5, subdomain="acme", user_id=7, is_admin=False)


def test_minted_token_expires_after_its_ttl() -> None:
    token = mint_widget_token(
        secret=SECRET,
        audience=AUDIENCE,
        account_id=5,
        subdomain="acme",
        user_id=7,
        is_admin=False,
        now=NOW,
        ttl=60,
    )

    assert verify(token, now=NOW + 60 + LEEWAY_SECONDS - 1).account_id == 5
    assert reason_of(token, now=NOW + 60 + LEEWAY_SECONDS) == "token expired"


def test_ids_sent_as_numeric_strings_become_integers() -> None:
    caller = verify(sign(claims(account_id="31234567", user_id=" 8765432 ")))

    assert caller.account_id == 31234567
    assert caller.user_id == 8765432


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        (True, True),
        (False, False),
        ("Y", True),
        ("N", False),
        ("1", True),
        ("0", False),
        (1, True),
        (0, False),
    ],
)
def test_is_admin_accepts_the_shapes_kommo_uses(sent: object, expected: bool) -> None:
    assert verify(sign(claims(is_admin=sent))).is_admin is expected


def test_a_token_without_is_admin_grants_no_admin_rights() -> None:
    assert verify(sign(claims(is_admin=None))).is_admin is False


def test_audience_may_be_a_list_or_carry_a_trailing_slash() -> None:
    assert verify(sign(claims(aud=["https://other.example.com", AUDIENCE]))).user_id == 8765432
    assert verify(sign(claims(aud=AUDIENCE + "/"))).user_id == 8765432


def test_subdomain_is_normalised_to_lower_case() -> None:
    assert verify(sign(claims(subdomain="MailerDemo"))).subdomain == "mailerdemo"


# ---------------------------------------------------------------- who signed it, for whom


def test_a_token_signed_with_another_secret_is_refused() -> None:
    assert reason_of(sign(claims(), secret=OTHER_SECRET)) == "signature does not match"


def test_a_token_whose_claims_were_changed_after_signing_is_refused() -> None:
    header, _, signature = sign(claims()).split(".")
    forged_payload = sign(claims(account_id=1)).split(".")[1]

    assert reason_of(f"{header}.{forged_payload}.{signature}") == "signature does not match"


def test_a_token_for_another_integration_is_refused() -> None:
    token = sign(claims(aud="https://someone-else.example.com"))

    assert reason_of(token) == "token is for another integration (aud)"


def test_a_token_without_audience_is_refused() -> None:
    assert reason_of(sign(claims(aud=None))) == "claim aud missing"


# ---------------------------------------------------------------- algorithms


def test_alg_none_is_refused() -> None:
    token = unsigned({"alg": "none", "typ": "JWT"}, claims())

    assert reason_of(token) == "token algorithm not allowed (only HS256)"


def test_alg_none_with_a_valid_looking_signature_is_refused() -> None:
    real_signature = sign(claims()).split(".")[2]
    header, payload, _ = unsigned({"alg": "none", "typ": "JWT"}, claims()).split(".")

    assert "algorithm not allowed" in reason_of(f"{header}.{payload}.{real_signature}")


def test_hs512_signed_with_the_right_secret_is_refused() -> None:
    assert "algorithm not allowed" in reason_of(sign(claims(), algorithm="HS512"))


def test_rs256_token_is_refused() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(claims(), key, algorithm="RS256")

    assert "algorithm not allowed" in reason_of(token)


# ---------------------------------------------------------------- time


def test_an_expired_token_is_refused() -> None:
    token = sign(claims(iat=int(NOW) - 3600, nbf=int(NOW) - 3600, exp=int(NOW) - 1800))

    assert reason_of(token) == "token expired"


def test_expiry_allows_a_little_clock_skew_and_no_more() -> None:
    token = sign(claims(exp=int(NOW)))

    assert verify(token, now=NOW + LEEWAY_SECONDS - 1).user_id == 8765432
    assert reason_of(token, now=NOW + LEEWAY_SECONDS) == "token expired"


def test_a_token_not_yet_valid_is_refused() -> None:
    token = sign(claims(nbf=int(NOW) + 600, exp=int(NOW) + 2400))

    assert reason_of(token) == "token not yet valid"
    assert verify(token, now=NOW + 600).user_id == 8765432


def test_not_before_allows_a_little_clock_skew() -> None:
    token = sign(claims(nbf=int(NOW) + LEEWAY_SECONDS))

    assert verify(token).user_id == 8765432
    assert reason_of(sign(claims(nbf=int(NOW) + LEEWAY_SECONDS + 1))) == "token not yet valid"


def test_a_token_issued_in_the_future_is_refused() -> None:
    assert reason_of(sign(claims(iat=int(NOW) + 600, nbf=None))) == "token issued in the future"


@pytest.mark.parametrize("name", ["exp", "nbf", "iat"])
def test_time_claims_must_be_numbers(name: str) -> None:
    assert reason_of(sign(claims(**{name: "soon"}))) == f"claim {name} is not a number"


# ---------------------------------------------------------------- claims


@pytest.mark.parametrize("name", ["account_id", "subdomain", "user_id", "exp"])
def test_a_token_missing_a_required_claim_is_refused(name: str) -> None:
    assert reason_of(sign(claims(**{name: None}))) == f"claim {name} missing"


@pytest.mark.parametrize("value", ["abc", "12a", "-5", 0, -5, 1.5, True, [1], {"id": 1}, "²"])
def test_account_id_must_be_a_positive_integer(value: object) -> None:
    assert reason_of(sign(claims(account_id=value))) == "claim account_id is not an integer"


@pytest.mark.parametrize("value", ["evil.example.com/", "a b", "x" * 64, 42, "-abc"])
def test_subdomain_must_be_a_single_dns_label(value: object) -> None:
    assert reason_of(sign(claims(subdomain=value))) == "claim subdomain is not a valid subdomain"


def test_is_admin_of_an_unknown_shape_is_refused() -> None:
    assert reason_of(sign(claims(is_admin="maybe"))) == "claim is_admin is not a boolean"


# ---------------------------------------------------------------- shape of the input


@pytest.mark.parametrize("token", [None, "", "   "])
def test_no_token_is_refused(token: str | None) -> None:
    assert reason_of(token) == "token missing"


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "eyJ.eyJ.sig"])
def test_garbage_is_refused_as_malformed(token: str) -> None:
    assert reason_of(token) == "token is malformed"


def test_an_oversized_token_is_refused_before_parsing() -> None:
    token = sign(claims(padding="x" * 10_000))

    assert reason_of(token) == "token too long"


def test_surrounding_whitespace_is_ignored() -> None:
    assert verify("  " + sign(claims()) + "\n").account_id == 31234567


@pytest.mark.parametrize(
    "token",
    [
        sign(claims(), secret=OTHER_SECRET),
        sign(claims(aud="https://someone-else.example.com")),
        sign(claims(exp=int(NOW) - 3600)),
        sign(claims(account_id="abc")),
        sign(claims(), algorithm="HS512"),
        unsigned({"alg": "none"}, claims()),
    ],
)
def test_the_reason_never_echoes_the_token(token: str) -> None:
    with pytest.raises(Unauthorized) as caught:
        verify(token)

    text = f"{caught.value} {caught.value.to_body()}"
    assert all(part not in text for part in token.split(".") if part)


# ---------------------------------------------------------------- server configuration


@pytest.mark.parametrize(("secret", "audience"), [("", AUDIENCE), ("  ", AUDIENCE), (SECRET, "")])
def test_empty_secret_or_audience_is_a_server_error_not_a_401(secret: str, audience: str) -> None:
    with pytest.raises(AuthNotConfigured) as caught:
        verify_widget_token(sign(claims()), secret=secret, audience=audience, now=NOW)

    assert not isinstance(caught.value, Unauthorized)
    assert caught.value.status == 500


def test_even_a_missing_token_reports_the_misconfiguration_first() -> None:
    with pytest.raises(AuthNotConfigured):
        verify_widget_token(None, secret="", audience=AUDIENCE, now=NOW)


def test_minting_without_a_secret_is_refused() -> None:
    with pytest.raises(AuthNotConfigured):
        mint_widget_token(
            secret="", audience=AUDIENCE, account_id=1, subdomain="a", user_id=1, is_admin=False, now=NOW
        )


def test_caller_is_immutable() -> None:
    caller = verify(sign(claims()))

    with pytest.raises(AttributeError):
        caller.account_id = 1  # type: ignore[misc]
