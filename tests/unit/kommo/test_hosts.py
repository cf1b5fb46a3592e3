"""One rule for a Kommo account host: the subdomain, the domains, the CORS origin."""

from __future__ import annotations

import pytest
from mailer_core.kommo import hosts
from mailer_core.web.edge import cors_headers, origin_allowed


@pytest.mark.parametrize(
    "subdomain", ["a", "7", "acme", "my-company", "a1-b2-c3", "x" * 63, "a" + "-" * 61 + "b"]
)
def test_valid_subdomains(subdomain: str) -> None:
    assert hosts.is_subdomain(subdomain)


@pytest.mark.parametrize(
    "subdomain",
    [
        "",
        "acme-",  # a label may not end in a hyphen
        "-acme",  # nor start with one
        "-",
        "x" * 64,  # 63 characters at most
        "acme.kommo",
        "ac_me",
        "ac me",
        " acme",
        "acme\n",
        "акме",
        "acmeſ",  # long s, which [a-z] under IGNORECASE would take for an s
        "acmeı",  # dotless i
    ],
)
def test_invalid_subdomains(subdomain: str) -> None:
    assert not hosts.is_subdomain(subdomain)


def test_a_subdomain_is_read_in_any_case() -> None:
    assert hosts.is_subdomain("ACME")
    assert hosts.is_subdomain("My-Company")
    assert not hosts.is_subdomain("ACME-")


def test_the_account_domains_are_kommo_and_amocrm_lowercase() -> None:
    assert hosts.ACCOUNT_DOMAINS == ("kommo.com", "amocrm.ru", "amocrm.com")
    assert all(hosts.is_account_domain(domain) for domain in hosts.ACCOUNT_DOMAINS)
    for domain in ("KOMMO.COM", "kommo.ru", "amocrm.org", "evil.kommo.com", "com", ""):
        assert not hosts.is_account_domain(domain)


@pytest.mark.parametrize(
    ("text", "host"),
    [
        ("acme.kommo.com", ("acme", "kommo.com")),
        ("https://acme.kommo.com", ("acme", "kommo.com")),
        ("http://acme.kommo.com/", ("acme", "kommo.com")),
        ("https://Acme.amocrm.ru/", ("acme", "amocrm.ru")),
        ("HTTPS://SHOP.AMOCRM.COM", ("shop", "amocrm.com")),
        ("my-company.amocrm.com", ("my-company", "amocrm.com")),
    ],
)
def test_an_account_host_is_parsed_lowercase(text: str, host: tuple[str, str]) -> None:
    assert hosts.parse_account_host(text) == host


@pytest.mark.parametrize(
    "text",
    [
        "",
        "kommo.com",
        "acme-.kommo.com",
        "-acme.kommo.com",
        "x" * 64 + ".kommo.com",
        "acme.kommo.com.evil.example",
        "a.b.kommo.com",
        "acme.kommo.com/leads",
        "ftp://acme.kommo.com",
        "acme.amocrm.org",
    ],
)
def test_anything_else_is_not_an_account_host(text: str) -> None:
    assert hosts.parse_account_host(text) is None


@pytest.mark.parametrize(
    "origin",
    [
        "https://acme.kommo.com",
        "https://my-company.amocrm.ru",
        "https://shop.amocrm.com",
        f"https://{'x' * 63}.kommo.com",
    ],
)
def test_account_origins(origin: str) -> None:
    assert hosts.is_account_origin(origin)
    assert origin_allowed(origin)


@pytest.mark.parametrize(
    "origin",
    [
        "https://acme-.kommo.com",  # the CORS check let this one through before
        "https://-acme.kommo.com",
        f"https://{'x' * 64}.kommo.com",
        "https://ACME.kommo.com",  # browsers send the host lowercase; the check always was lowercase only
        "http://acme.kommo.com",
        "https://acme.kommo.com/",
        "https://acme.kommo.com\n",
        "https://acme.kommo.com:8443",
        "https://kommo.com",
        "https://acme.kommo.com.evil.example",
    ],
)
def test_not_account_origins(origin: str) -> None:
    assert not hosts.is_account_origin(origin)
    assert not origin_allowed(origin)


def test_the_api_gives_no_cors_headers_to_a_subdomain_ending_in_a_hyphen() -> None:
    assert cors_headers("https://acme-.kommo.com", preflight=True) == {}
    assert cors_headers("https://acme.kommo.com", preflight=True)["Access-Control-Allow-Origin"] == (
        "https://acme.kommo.com"
    )
