"""Kommo account hosts: `https://<subdomain>.<domain>`, one rule for every place that reads one.

A subdomain is one DNS label: 1 to 63 ASCII letters, digits and hyphens, neither first nor
last a hyphen. It is read in any case and used lowercase (it goes into Kommo API URLs). The
domains are Kommo's own and amoCRM's (the same platform, older domains).

Who reads one: the Kommo client (the API base URL), the widget token and the Salesbot token
(the `subdomain` claim), the digital pipeline hook (its `subdomain` field), the install redirect
(its `referer`) and the API's CORS check (the `Origin` header, see `is_account_origin`).
"""

from __future__ import annotations

import re

ACCOUNT_DOMAINS = ("kommo.com", "amocrm.ru", "amocrm.com")
SUBDOMAIN_PATTERN = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN_PATTERN = "|".join(re.escape(domain) for domain in ACCOUNT_DOMAINS)

# Lowercase patterns without IGNORECASE: text is lowered first where any case is allowed, so
# [a-z] never matches the non-ASCII letters IGNORECASE lets through (ſ, ı, İ).
_SUBDOMAIN = re.compile(SUBDOMAIN_PATTERN)
_HOST = re.compile(rf"(?:https?://)?(?P<subdomain>{SUBDOMAIN_PATTERN})\.(?P<domain>{_DOMAIN_PATTERN})/?")
_ORIGIN = re.compile(rf"https://{SUBDOMAIN_PATTERN}\.(?:{_DOMAIN_PATTERN})")


def is_subdomain(text: str) -> bool:
    """Whether `text` (any case, nothing around it) is a Kommo account subdomain."""
    return _SUBDOMAIN.fullmatch(text.lower()) is not None


def is_account_domain(domain: str) -> bool:
    """Whether `domain` is one of Kommo's account domains, exactly (lowercase)."""
    return domain in ACCOUNT_DOMAINS


def parse_account_host(text: str) -> tuple[str, str] | None:
    """(subdomain, domain), lowercase, of an account host such as `acme.kommo.com`.

    Any case, with or without `http://` or `https://` and a trailing slash (Kommo's install
    redirect sends its `referer` either way); None for anything else.
    """
    match = _HOST.fullmatch(text.lower())
    if match is None:
        return None
    return match["subdomain"], match["domain"]


def is_account_origin(origin: str) -> bool:
    """Whether a browser's `Origin` is a Kommo account page: `https://<subdomain>.<domain>` exactly.

    Lowercase only: browsers send the host lowercase, and the origin is echoed back as
    `Access-Control-Allow-Origin` as it came.
    """
    return _ORIGIN.fullmatch(origin) is not None
