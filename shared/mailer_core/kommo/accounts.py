"""The Kommo client of an installed account: its stored tokens and its shared rate limit."""

from __future__ import annotations

from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.errors import Conflict
from mailer_core.kommo import limits as kommo_limits
from mailer_core.kommo import tokens as kommo_tokens
from mailer_core.kommo.client import KommoClient
from mailer_core.store.models import AccountModel


def client_for_account(
    account: AccountModel, *, clock: Clock = SYSTEM_CLOCK, max_retries: int = 4, timeout: float = 10.0
) -> KommoClient:
    """The client for an installed account: its tokens (refreshed before expiry), its shared rate limit.

    Refuses an account Kommo blocked (until its cool-off passes) or that lost its connection.
    """

    if not account.kommo_token_ciphertext:
        raise Conflict("the account is not connected to Kommo", field=None)
    gate = kommo_limits.AccountGate(account, clock=clock)
    gate.check_open()
    tokens = kommo_tokens.AccountTokens(account, clock=clock, gate=gate)
    tokens.current()  # decrypt (and refresh, when due) now: a broken connection fails here
    return KommoClient(
        account.subdomain,
        tokens,
        domain=account.kommo_domain or "kommo.com",
        clock=clock,
        gate=gate,
        account_id=int(account.account_id),
        max_retries=max_retries,
        timeout=timeout,
    )
