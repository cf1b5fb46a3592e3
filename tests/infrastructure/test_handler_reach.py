"""What each handler can reach (scripts/handler_reach.py): the pixel and click routes stay light.

The track function answers every open pixel and every click: it must load nothing that
renders, sends, reads a mailbox or calls Kommo, at a cold start or later.
"""

from __future__ import annotations

from scripts.handler_reach import handlers, reach

FORBIDDEN_FOR_TRACK = (
    "mailer_core.rendering",
    "mailer_core.kommo",
    "mailer_core.adapters.smtp",
    "mailer_core.adapters.imap",
    "mailer_core.sending",
    "mailer_core.automation",
)


def _under(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


def test_the_track_handler_reaches_no_rendering_smtp_imap_or_kommo_module() -> None:
    modules, heavy = reach(handlers()["track"], lazy=True)
    assert "mailer_core.tracking.routes" in modules
    assert _under(modules, FORBIDDEN_FOR_TRACK) == []
    assert heavy == set()


def test_the_scan_follows_imports_written_inside_functions() -> None:
    """The send worker loads rendering on its first send, not at import: both are seen."""
    at_cold_start, _ = reach(handlers()["send"], lazy=False)
    in_all, heavy = reach(handlers()["send"], lazy=True)
    assert "mailer_core.rendering.personalize" in in_all - at_cold_start
    assert "mailer_core.adapters.smtp" in at_cold_start
    assert {"jinja2", "smtplib"} <= heavy


def test_every_handler_is_scanned() -> None:
    assert {
        "api",
        "send",
        "track",
        "webhook",
        "actions",
        "timers",
        "bounces",
        "pipeline",
        "kommo_auth",
    } <= set(handlers())
