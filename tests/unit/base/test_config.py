"""The runtime configuration never prints its secrets."""

from __future__ import annotations

from mailer_core.base.config import Settings


def test_the_settings_repr_shows_no_secret() -> None:
    settings = Settings(kommo_client_secret="kommo-s3cret", tracking_secret="track-s3cret")

    shown = f"{settings!r} {settings}"

    assert "kommo-s3cret" not in shown and "track-s3cret" not in shown
    assert settings.kommo_client_secret == "kommo-s3cret"  # still there for the code that needs it
