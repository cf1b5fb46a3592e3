"""Secrets Manager: the only module that reads the stack's secrets (the Kommo client secret,
the tracking secret).

The template keeps each secret in Secrets Manager and gives the functions only its ARN
(`MAILER_KOMMO_CLIENT_SECRET_ID`, `MAILER_TRACKING_SECRET_ID`); only the functions whose IAM
role may read a secret can turn the ARN into the value. A value read is kept for
`CACHE_SECONDS` per container (a cold start pays one GetSecretValue, about 20-50 ms; a changed
secret is seen within that time). The local stack creates the same secrets in moto from its
embedded defaults.

A plain setting (`KOMMO_CLIENT_SECRET`, `MAILER_TRACKING_SECRET`), when set, wins over the
ARN: that is for tests and scripts only; a template test refuses both names in a deployed
function's environment, so there the secret always comes from Secrets Manager.
"""

from __future__ import annotations

import time

from mailer_core.adapters import aws
from mailer_core.base.config import get_settings
from mailer_core.base.ttl_cache import TtlCache

CACHE_SECONDS = 300.0
_cache: TtlCache[str, str] = TtlCache(CACHE_SECONDS)


def _read(secret_id: str) -> str:
    answer = aws.client("secretsmanager").get_secret_value(SecretId=secret_id)
    return str(answer.get("SecretString") or "")


def _value(secret_id: str, plain: str) -> str:
    if plain or not secret_id:
        return plain
    return _cache.get_or_load(secret_id, time.monotonic(), lambda: _read(secret_id))


def kommo_client_secret() -> str:
    """The integration's client secret: signs the widget token, the OAuth calls and hooks."""
    settings = get_settings()
    return _value(settings.kommo_client_secret_id, settings.kommo_client_secret)


def tracking_secret() -> str:
    """The HMAC key of pixel, click and unsubscribe tokens ("" when none is configured)."""
    settings = get_settings()
    return _value(settings.tracking_secret_id, settings.tracking_secret)


def tracking_configured() -> bool:
    """Whether a tracking secret is configured, without reading it."""
    settings = get_settings()
    return bool(settings.tracking_secret_id or settings.tracking_secret)


def forget() -> None:
    """Drop the values read (tests; a container that must see a changed secret at once)."""
    _cache.clear()
