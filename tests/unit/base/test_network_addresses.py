"""The addresses Mailer connects to for a user: every address a host resolves to must be public."""

from __future__ import annotations

import socket

import pytest
from mailer_core.base.network_addresses import (
    DEFAULT_POLICY,
    LOOPBACK_ALLOWED,
    AddressRefused,
    checked_address,
    host_refusal,
)


def resolver(answers: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers[host]

    return resolve


DNS = resolver(
    {
        "smtp.public.example": ["8.8.8.8", "2001:4860:4860::8888"],
        "smtp.mixed.example": ["8.8.8.8", "10.0.0.7"],
        "smtp.metadata.example": ["169.254.169.254"],
        "smtp.loopback.example": ["127.0.0.1", "::1"],
    }
)


def test_a_public_host_gives_the_first_address_to_connect_to() -> None:
    assert checked_address("smtp.public.example", 465, DEFAULT_POLICY, DNS) == "8.8.8.8"
    assert host_refusal("smtp.public.example", DEFAULT_POLICY, DNS) is None


@pytest.mark.parametrize(
    ("host", "words"),
    [
        ("smtp.mixed.example", "a private address (10.0.0.7)"),  # one private answer among public ones
        ("smtp.metadata.example", "link-local"),
        ("smtp.loopback.example", "a loopback address (127.0.0.1)"),
        ("127.0.0.1", "loopback"),
        ("192.168.1.10", "private"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("0.0.0.0", "unspecified"),
        ("::ffff:10.0.0.1", "inside an IPv6 address"),
    ],
)
def test_a_host_leading_anywhere_else_is_refused_with_the_reason(host: str, words: str) -> None:
    with pytest.raises(AddressRefused) as refused:
        checked_address(host, 587, DEFAULT_POLICY, DNS)
    assert words in str(refused.value) and host in str(refused.value)
    assert words in (host_refusal(host, DEFAULT_POLICY, DNS) or "")


def test_the_local_stacks_policy_lets_loopback_through_and_nothing_else() -> None:
    assert checked_address("smtp.loopback.example", 25, LOOPBACK_ALLOWED, DNS) == "127.0.0.1"
    assert host_refusal("::1", LOOPBACK_ALLOWED, DNS) is None
    for host in ("smtp.mixed.example", "smtp.metadata.example", "10.1.2.3"):
        assert host_refusal(host, LOOPBACK_ALLOWED, DNS) is not None


def test_a_host_dns_does_not_know_is_left_to_the_connection() -> None:
    assert host_refusal("smtp.nowhere.example", DEFAULT_POLICY, DNS) is None
    with pytest.raises(socket.gaierror):
        checked_address("smtp.nowhere.example", 465, DEFAULT_POLICY, DNS)
