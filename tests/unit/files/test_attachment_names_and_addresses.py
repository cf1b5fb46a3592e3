"""File names of uploads, media types, and the address policy of links (no network)."""

from __future__ import annotations

import ipaddress

import pytest
from mailer_core.adapters.web_fetch import (
    DEFAULT_POLICY,
    AddressPolicy,
    FetchRefused,
    literal_refusal,
    parse_link,
)
from mailer_core.base.errors import InvalidInput
from mailer_core.files.uploads import content_type_for, key_name, safe_filename


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Коммерческое предложение.pdf", "Коммерческое предложение.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\anna\\Отчёт: 2026?.xlsx", "Отчёт_ 2026_.xlsx"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),  # no right-to-left override disguise
        ("line\r\nBcc: x@evil.test.pdf", "line Bcc_ x@evil.test.pdf"),  # no header injection
        ("  .hidden  ", "hidden"),
        ("...", "file"),
        ("", "file"),
        ("Cafe\u0301.txt", "Café.txt"),  # NFC
    ],
)
def test_safe_filename(given: str, expected: str) -> None:
    assert safe_filename(given) == expected


def test_a_long_name_is_cut_to_200_bytes_keeping_its_extension() -> None:
    name = safe_filename("я" * 300 + ".pdf")

    assert name.endswith(".pdf") and len(name.encode()) <= 200
    assert set(name.removesuffix(".pdf")) == {"я"}


@pytest.mark.parametrize(
    ("filename", "key"),
    [
        ("Счёт 42.pdf", "42.pdf"),
        ("Прайс.xlsx", "file.xlsx"),
        ("a b(1).tar.gz", "a_b_1_.tar.gz"),
        ("README", "README"),
    ],
)
def test_object_keys_are_ascii(filename: str, key: str) -> None:
    assert key_name(filename) == key


def test_media_types_are_bare_lower_case_or_guessed() -> None:
    assert content_type_for("Application/PDF; charset=binary", "a.pdf") == "application/pdf"
    assert content_type_for(None, "a.docx").endswith("wordprocessingml.document")
    assert content_type_for("", "noext") == "application/octet-stream"
    with pytest.raises(InvalidInput):
        content_type_for("text/html\r\nX-Evil: 1", "a.html")
    with pytest.raises(InvalidInput):
        content_type_for(["application/pdf"], "a.pdf")


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "93.184.216.34", "2a00:1450:4001:82a::200e", "1.1.1.1"],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert DEFAULT_POLICY.refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.255.0.1",
        "172.31.255.255",
        "192.168.0.10",
        "169.254.169.254",
        "169.254.170.2",  # the ECS/Lambda credentials endpoint's range
        "100.100.100.200",
        "0.0.0.0",
        "255.255.255.255",
        "192.0.2.1",  # documentation
        "::1",
        "::",
        "fe80::1",
        "fd12:3456::1",
        "fec0::1",
        "ff02::1",
        "::ffff:169.254.169.254",
        "2002:a9fe:a9fe::1",  # 6to4 around 169.254.169.254
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert DEFAULT_POLICY.refusal(ipaddress.ip_address(address)) is not None


def test_an_allow_list_lets_only_its_networks_through() -> None:
    policy = AddressPolicy(allow=(ipaddress.ip_network("127.0.0.0/8"),))

    assert policy.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert policy.refusal(ipaddress.ip_address("10.0.0.1")) is not None
    assert policy.refusal(ipaddress.ip_address("::1")) is not None


def test_links_are_parsed_into_what_is_requested() -> None:
    target = parse_link("HTTPS://Пример.рф/доки/Счёт 1.pdf?id=7&x=а")

    assert (target.scheme, target.host, target.port) == ("https", "xn--e1afmkfd.xn--p1ai", 443)
    assert target.request_path == "/%D0%B4%D0%BE%D0%BA%D0%B8/%D0%A1%D1%87%D1%91%D1%82%201.pdf?id=7&x=%D0%B0"
    assert parse_link("http://[2a00:1450::1]:8080/a").host == "2a00:1450::1"
    with pytest.raises(FetchRefused):
        parse_link("http://files.example.com:99999/a")


def test_literal_refusal_judges_only_what_needs_no_dns() -> None:
    assert literal_refusal("https://files.example.com/a.pdf") is None
    assert "loopback" in (literal_refusal("http://127.0.0.1:8080/") or "")
    assert "http and https" in (literal_refusal("javascript:alert(1)") or "")
