"""Connection presets for common mail providers, found from the address's domain.

Only the domain is looked at (no DNS, no MX lookup): public mail services are known by their
domains; a company domain hosted by Google Workspace, Microsoft 365, Yandex 360 or Mail.ru
for business matches nothing, and the widget offers the list of providers to pick from.
Each preset fills SMTP and (where the provider has a mailbox) IMAP settings, says whether
the provider needs an app password and how to get one, and whether it files mail sent over
SMTP into the Sent folder by itself (then Mailer does not append a second copy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Preset:
    key: str
    name: str
    smtp_host: str
    smtp_port: int
    smtp_security: str
    imap_host: str | None
    imap_port: int | None
    imap_security: str | None
    domains: tuple[str, ...] = ()
    app_password: bool = False
    hint: str = ""
    # The provider puts mail sent over SMTP into Sent itself; a second copy would duplicate it.
    files_sent_itself: bool = False

    def fields(self) -> dict[str, Any]:
        """The mailbox fields this preset fills."""
        values: dict[str, Any] = {
            "smtp_host": self.smtp_host,
            "smtp_port": self.smtp_port,
            "smtp_security": self.smtp_security,
            "append_to_sent": not self.files_sent_itself,
        }
        if self.imap_host:
            values.update(
                imap_host=self.imap_host, imap_port=self.imap_port, imap_security=self.imap_security
            )
        return values

    def view(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "domains": list(self.domains),
            "app_password": self.app_password,
            "hint": self.hint,
            "files_sent_itself": self.files_sent_itself,
            "fields": self.fields(),
        }


PRESETS: tuple[Preset, ...] = (
    Preset(
        "google",
        "Gmail / Google Workspace",
        "smtp.gmail.com",
        465,
        "ssl",
        "imap.gmail.com",
        993,
        "ssl",
        domains=("gmail.com", "googlemail.com"),
        app_password=True,
        hint=(
            "Google needs an app password: turn on 2-Step Verification, then create one in your "
            "Google Account under Security → App passwords. In Google Workspace the administrator "
            "may have to allow it."
        ),
        files_sent_itself=True,
    ),
    Preset(
        "yandex",
        "Yandex Mail / Yandex 360",
        "smtp.yandex.ru",
        465,
        "ssl",
        "imap.yandex.ru",
        993,
        "ssl",
        domains=("yandex.ru", "yandex.com", "ya.ru", "yandex.by", "yandex.kz", "yandex.ua", "narod.ru"),
        app_password=True,
        hint=(
            "Yandex needs an app password: Yandex ID → Security → App passwords → Mail. "
            "Also turn on IMAP in Mail settings → Email clients."
        ),
    ),
    Preset(
        "mailru",
        "Mail.ru / VK WorkMail",
        "smtp.mail.ru",
        465,
        "ssl",
        "imap.mail.ru",
        993,
        "ssl",
        domains=("mail.ru", "inbox.ru", "list.ru", "bk.ru", "internet.ru", "mail.ua"),
        app_password=True,
        hint="Mail.ru needs a password for external apps: Settings → Security → Passwords for external apps.",
    ),
    Preset(
        "outlook",
        "Outlook.com / Hotmail",
        "smtp-mail.outlook.com",
        587,
        "starttls",
        "outlook.office365.com",
        993,
        "ssl",
        domains=("outlook.com", "hotmail.com", "live.com", "msn.com", "outlook.ru"),
        app_password=True,
        hint=(
            "Microsoft accepts passwords from mail programs only with two-step verification on "
            "and an app password, and is phasing password sign-in out."
        ),
        files_sent_itself=True,
    ),
    Preset(
        "microsoft365",
        "Microsoft 365 (Exchange Online)",
        "smtp.office365.com",
        587,
        "starttls",
        "outlook.office365.com",
        993,
        "ssl",
        app_password=True,
        hint=(
            "An administrator must turn on Authenticated SMTP and IMAP for this mailbox; with "
            "multi-factor authentication, use an app password."
        ),
        files_sent_itself=True,
    ),
    Preset(
        "icloud",
        "iCloud Mail",
        "smtp.mail.me.com",
        587,
        "starttls",
        "imap.mail.me.com",
        993,
        "ssl",
        domains=("icloud.com", "me.com", "mac.com"),
        app_password=True,
        hint=(
            "Apple needs an app-specific password: account.apple.com → Sign-In and Security → "
            "App-Specific Passwords."
        ),
    ),
    Preset(
        "zoho",
        "Zoho Mail",
        "smtp.zoho.com",
        465,
        "ssl",
        "imap.zoho.com",
        993,
        "ssl",
        domains=("zoho.com", "zohomail.com"),
        app_password=True,
        hint=(
            "With two-factor authentication Zoho needs an application-specific password; "
            "IMAP access must be on in Zoho Mail settings."
        ),
    ),
    Preset(
        "zoho_eu",
        "Zoho Mail (EU)",
        "smtp.zoho.eu",
        465,
        "ssl",
        "imap.zoho.eu",
        993,
        "ssl",
        domains=("zoho.eu", "zohomail.eu"),
        app_password=True,
        hint=(
            "With two-factor authentication Zoho needs an application-specific password; "
            "IMAP access must be on in Zoho Mail settings."
        ),
    ),
    Preset(
        "rambler",
        "Rambler Mail",
        "smtp.rambler.ru",
        465,
        "ssl",
        "imap.rambler.ru",
        993,
        "ssl",
        domains=("rambler.ru", "lenta.ru", "autorambler.ru", "myrambler.ru", "ro.ru"),
        hint="Allow mail programs in Rambler Mail settings → Mail programs.",
    ),
    Preset(
        "sendpulse",
        "SendPulse SMTP relay",
        "smtp-pulse.com",
        465,
        "ssl",
        None,
        None,
        None,
        hint=(
            "Use the SMTP login and password from SendPulse → SMTP → Settings. A relay has no "
            "mailbox: Mailer sends through it but cannot file into Sent or read bounces, so the "
            "mailbox shows gray."
        ),
    ),
)

_BY_DOMAIN = {domain: preset for preset in PRESETS for domain in preset.domains}
_BY_KEY = {preset.key: preset for preset in PRESETS}


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().lower().rstrip(".")


def for_email(address: str) -> Preset | None:
    """The preset of a public mail service the address belongs to; None for other domains."""
    return _BY_DOMAIN.get(domain_of(address))


def for_host(host: str) -> Preset | None:
    """The preset whose SMTP or IMAP server this is (to word a hint after a failed login)."""
    host = host.strip().lower().rstrip(".")
    return next((p for p in PRESETS if host in (p.smtp_host, p.imap_host)), None)


def by_key(key: str) -> Preset | None:
    return _BY_KEY.get(key)


def suggest(address: str) -> dict[str, Any]:
    """What GET /v1/mailboxes/presets answers: the match for the address, and every provider."""
    match = for_email(address) if address else None
    return {
        "email": address,
        "domain": domain_of(address) if address else "",
        "match": match.view() if match else None,
        "providers": [preset.view() for preset in PRESETS],
    }


def fill(payload: dict[str, Any], sender_email: str) -> dict[str, Any]:
    """A create payload with the connection fields it leaves out taken from the address's preset."""
    preset = for_email(sender_email)
    if preset is None:
        return payload
    given_host = payload.get("smtp_host")
    if given_host is not None and str(given_host).strip().lower() != preset.smtp_host:
        return payload  # the user's own server: nothing to guess
    filled = dict(payload)
    for name, value in preset.fields().items():
        filled.setdefault(name, value)
    return filled
