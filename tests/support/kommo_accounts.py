"""Kommo accounts for tests: serialized moto, the integration's settings, an installed account.

moto's in-process backends are not thread-safe: two threads' conditional UpdateItems can
interleave between check and write, which real DynamoDB never lets happen. `serialize_moto`
makes each moto request atomic, as DynamoDB's single-item writes are, so concurrency tests
test our code and not moto.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from mailer_core.adapters import kms
from mailer_core.base.config import reset_settings
from mailer_core.kommo_hooks.install import token_context
from mailer_core.store.models import AccountModel
from moto.core.botocore_stubber import BotocoreStubber

from devstack.kommo_standin import seed
from devstack.kommo_standin.server import KommoStandIn
from tests.support.constants import TEST_REDIRECT_URI, TEST_SECRET

CLIENT_ID = "test-kommo-client-id"


def serialize_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    lock = threading.RLock()
    original = BotocoreStubber.process_request

    def atomic(self: BotocoreStubber, request: Any) -> Any:
        with lock:
            return original(self, request)

    monkeypatch.setattr(BotocoreStubber, "process_request", atomic)


def point_at(standin: KommoStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings for the integration `CLIENT_ID`, with Kommo at the stand-in; the stand-in knows it."""
    standin.register_integration(CLIENT_ID, TEST_SECRET, TEST_REDIRECT_URI)
    monkeypatch.setenv("MAILER_KOMMO_BASE_URL", standin.base_url)
    monkeypatch.setenv("KOMMO_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("KOMMO_CLIENT_SECRET", TEST_SECRET)
    monkeypatch.setenv("KOMMO_REDIRECT_URI", TEST_REDIRECT_URI)
    reset_settings()


def save_account_with_token(token: str, *, account_id: int = seed.ACCOUNT_ID, **extra: Any) -> AccountModel:
    """An account holding a token that never expires (no refresh token), as `add_token` gives."""
    account = AccountModel(
        account_id,
        subdomain=seed.SUBDOMAIN,
        kommo_token_ciphertext=kms.encrypt(token, token_context(account_id, "access")),
        **extra,
    )
    account.save()
    return account


def stored_tokens(account_id: int = seed.ACCOUNT_ID) -> tuple[str, str]:
    """(access, refresh) as stored for the account, decrypted."""
    account = AccountModel.get(account_id, consistent_read=True)
    return (
        kms.decrypt(str(account.kommo_token_ciphertext), token_context(account_id, "access")),
        kms.decrypt(str(account.kommo_refresh_token_ciphertext), token_context(account_id, "refresh")),
    )
