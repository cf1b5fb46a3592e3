"""Headless Chromium for the tests of what a person opens (pages, forms, the widget).

The browser is Debian's `chromium` (scripts/ensure-chromium.sh installs it), driven by
Playwright for Python through `executable_path`: Playwright never downloads a browser here.
Chromium may resolve no host but this machine's (`--host-resolver-rules`), so a page under
test cannot reach anything off it. Screenshots go to `screenshot_dir()`, which `make test`
names, so a person can look at each screen after a run.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

REPOSITORY = Path(__file__).resolve().parents[2]
DEFAULT_SCREENSHOTS = REPOSITORY / "build" / "screenshots"

# The flags the machine's notes give for a closed network, and a resolver that knows only loopback.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
)


def chromium_path() -> str | None:
    """`MAILER_CHROMIUM` when set, else Debian's `chromium` on the PATH."""
    configured = os.environ.get("MAILER_CHROMIUM", "").strip()
    if configured:
        return configured if Path(configured).exists() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def require_chromium() -> str:
    """The browser's path; skips the test when there is none, and fails it under CI=true."""
    found = chromium_path()
    if found is not None:
        return found
    message = "the browser tests need Debian's chromium (scripts/ensure-chromium.sh installs it)"
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def screenshot_dir() -> Path:
    """Where tests leave their screenshots: `MAILER_SCREENSHOTS`, else build/screenshots."""
    configured = os.environ.get("MAILER_SCREENSHOTS", "").strip()
    folder = Path(configured) if configured else DEFAULT_SCREENSHOTS
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def screenshot_path(name: str) -> Path:
    """A file for one screen's picture, named by the test (letters, digits, dashes)."""
    safe = re.sub(r"[^\w.-]+", "-", name).strip("-") or "screen"
    return screenshot_dir() / f"{safe}.png"


@contextmanager
def launched_chromium() -> Iterator[Browser]:
    """A headless Chromium for the duration; yields Playwright's `Browser`."""
    executable = require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def fresh_page(
    browser: Browser,
    *,
    locale: str = "en-US",
    height: int = 800,
    width: int = 1280,
    timeout_ms: int = 10_000,
    user_agent: str | None = None,
) -> Iterator[Page]:
    """A page in a fresh context (no cookies, no storage) with this locale, closed afterwards."""
    options: dict[str, object] = {"locale": locale, "viewport": {"width": width, "height": height}}
    if user_agent is not None:
        options["user_agent"] = user_agent
    context = browser.new_context(**options)  # type: ignore[arg-type]
    context.set_default_timeout(timeout_ms)
    try:
        yield context.new_page()
    finally:
        context.close()
