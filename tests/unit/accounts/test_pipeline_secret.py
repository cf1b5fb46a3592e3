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


def test_derived_secrets_are_256_bits_per_account_and_version_under_the_client_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pipeline_secret.secrets, "kommo_client_secret", lambda: "client-secret-one")
    made = {pipeline_secret.derived(account, version) for account in (1, 2) for version in (1, 2, 3)}
    again = pipeline_secret.derived(2, 3)
    monkeypatch.setattr(pipeline_secret.secrets, "kommo_client_secret", lambda: "client-secret-two")

    assert len(made) == 6 and all(len(s) == 43 for s in made) and again in made
    assert pipeline_secret.derived(2, 3) != again  # another client secret: another secret


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
