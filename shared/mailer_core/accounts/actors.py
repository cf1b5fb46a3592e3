"""Who acts on an account's data: a widget user (the verified token's `Caller`), or Mailer
itself acting for a user of the account.

An automatic compose (the digital pipeline, a "send email" trigger) is not a request of that
user: the account's administrators set the automation up, so it reaches every mailbox and
template of the account. It says so (`Actor.automatic`) instead of posing as an administrator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class Acting(Protocol):
    """What the rules about mailboxes and templates need to know of whoever acts."""

    @property
    def account_id(self) -> int: ...

    @property
    def user_id(self) -> int: ...

    @property
    def account_wide(self) -> bool:
        """Reaches every user's mailboxes and templates of the account."""
        ...


@dataclass(frozen=True)
class Actor:
    account_id: int
    user_id: int
    account_wide: bool = False

    @classmethod
    def automatic(cls, account_id: int, user_id: int) -> Actor:
        """Mailer itself, composing for `user_id` as the account's automation was set up."""
        return cls(int(account_id), int(user_id), account_wide=True)
