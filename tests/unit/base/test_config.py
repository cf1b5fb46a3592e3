"""The runtime configuration never prints its secrets."""

from __future__ import annotations

from mailer_core.base.config import Settings, from_environment


def test_the_settings_repr_shows_no_secret() -> None:
    settings = Settings(kommo_client_secret="kommo-s3cret", tracking_secret="track-s3cret")

    shown = f"{settings!r} {settings}"

    assert "kommo-s3cret" not in shown and "track-s3cret" not in shown
    assert settings.kommo_client_secret == "kommo-s3cret"  # still there for the code that needs it


def test_functions_share_one_kommo_budget_per_address_unless_told_otherwise() -> None:
    # Kommo counts 7 requests per second per IP: by default every function shares one budget
    default = from_environment({})
    assert (default.kommo_egress_key, default.kommo_egress_requests_per_second) == ("shared", None)
    # a stack that leaves through a named NAT gateway names its budget, and may set its rate
    named = from_environment(
        {"MAILER_KOMMO_EGRESS_KEY": "nat-eu-west-1a", "MAILER_KOMMO_EGRESS_REQUESTS_PER_SECOND": "5"}
    )
    assert (named.kommo_egress_key, named.kommo_egress_requests_per_second) == ("nat-eu-west-1a", 5.0)
