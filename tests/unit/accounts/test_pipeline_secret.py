"""The pipeline secret's comparison: against the stored hash, or a plain secret from before."""

from __future__ import annotations

import hashlib

import pytest
from mailer_core.accounts import pipeline_secret
from mailer_core.store.models import AccountModel

SECRET = "a-high-entropy-secret-0123456789abcdefghijkl"


def _account(**values: str) -> AccountModel:
    return AccountModel(31000001, **values)


def test_the_stored_form_is_the_secrets_sha256_in_hex() -> None:
    assert pipeline_secret.digest(SECRET) == hashlib.sha256(SECRET.encode()).hexdigest()
    assert SECRET not in pipeline_secret.digest(SECRET)


def test_new_secrets_carry_256_random_bits() -> None:
    made = {pipeline_secret.new_secret() for _ in range(20)}

    assert len(made) == 20 and all(len(s) == 43 for s in made)


@pytest.mark.parametrize(
    ("presented", "expected"),
    [
        (SECRET, True),
        (SECRET + "x", False),
        (SECRET[:-1], False),
        ("", False),
        (pipeline_secret.digest(SECRET), False),
    ],
)
def test_a_presented_secret_matches_only_the_one_whose_hash_is_stored(presented: str, expected: bool) -> None:
    account = _account(dp_secret_hash=pipeline_secret.digest(SECRET))

    assert pipeline_secret.matches(account, presented) is expected


def test_no_account_or_no_secret_matches_nothing() -> None:
    assert not pipeline_secret.matches(None, SECRET)
    assert not pipeline_secret.matches(_account(), SECRET)
    assert not pipeline_secret.matches(_account(), "")


def test_a_plain_secret_from_before_matches_and_is_replaced_by_its_hash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hashed: list[tuple[int, str]] = []
    monkeypatch.setattr(
        pipeline_secret, "_hash_plain", lambda account_id, plain: hashed.append((account_id, plain))
    )

    assert pipeline_secret.matches(_account(dp_secret=SECRET), SECRET)
    assert not pipeline_secret.matches(_account(dp_secret=SECRET), "wrong")
    assert hashed == [(31000001, SECRET)]


def test_once_hashed_the_plain_secret_left_behind_counts_for_nothing() -> None:
    """A hash wins over a plain value: after a rotation the old plain secret is refused."""
    account = _account(dp_secret=SECRET, dp_secret_hash=pipeline_secret.digest("the-new-one"))

    assert not pipeline_secret.matches(account, SECRET)
    assert pipeline_secret.matches(account, "the-new-one")
