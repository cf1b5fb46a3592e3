"""The widget on the local host page, for browser tests (devstack/widget_host, docs/widget.md).

`ensure_built()` makes what the page serves when a test run finds it missing: the widget
archive (`make widget`'s script) and the host's vendored libraries (`npm ci`, as
`make host-vendor`); a test is skipped with the reason when that cannot be done, and fails
under CI=true. `probe_archive` zips tests/support/widget_probe, a small widget that calls each
platform method, for the host's own tests. `open_area` opens a page and waits until the host
has run the widget's callbacks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from devstack.widget_host.server import DEFAULT_ARCHIVE, NODE_MODULES, PACKAGE, VENDOR_FILES

REPOSITORY = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).resolve().parent / "widget_probe"


def _unavailable(message: str) -> None:
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def ensure_vendor() -> None:
    """The host page's libraries in devstack/widget_host/node_modules (npm ci when missing)."""
    if all((NODE_MODULES / f).is_file() for f in VENDOR_FILES.values()):
        return
    npm = shutil.which("npm")
    if npm is None:
        _unavailable("the host page needs npm to vendor its libraries (make host-vendor)")
        return
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--prefix", str(PACKAGE)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        _unavailable(f"npm ci for the host page failed: {done.stderr[-500:]}")


def ensure_widget(archive: Path = DEFAULT_ARCHIVE) -> Path:
    """The built widget archive (scripts/build_widget.py, as `make widget`, when missing or older
    than a file of widget/)."""
    script = REPOSITORY / "scripts" / "build_widget.py"
    sources = [p for p in (REPOSITORY / "widget").rglob("*") if p.is_file() and "node_modules" not in p.parts]
    stale = archive.is_file() and any(p.stat().st_mtime > archive.stat().st_mtime for p in sources)
    if stale or not archive.is_file():
        if not script.is_file():
            _unavailable("no widget build script yet (scripts/build_widget.py)")
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
        if done.returncode != 0 or not archive.is_file():
            _unavailable(f"make widget failed: {done.stdout[-300:]} {done.stderr[-500:]}")
    return archive


def probe_archive(folder: Path) -> Path:
    """tests/support/widget_probe zipped as Kommo wants an archive (files at its root)."""
    archive = folder / "probe.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(p for p in PROBE.rglob("*") if p.is_file()):
            zf.write(path, path.relative_to(PROBE).as_posix())
    return archive


def open_area(page: Any, url: str) -> None:
    """Go to a host page and wait until the widget's callbacks ran (or the host said why not)."""
    page.goto(url)
    page.wait_for_selector("body[data-host-ready], #host-error", state="attached")
    error = page.locator("#host-error")
    if error.count():
        raise AssertionError(f"the host page could not host the widget: {error.inner_text()}")
