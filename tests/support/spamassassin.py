"""SpamAssassin (Debian's package) as the tests run it: local rules only, nothing kept.

    require_spamassassin()
    [report] = score_all([raw_bytes])
    assert report.score <= 1.0, report.describe()

Each email is scored by one `spamassassin --local --test-mode` process: local rules only, so
no network test runs (no DNS blocklists, no Razor, Pyzor or DCC), the Bayes classifier is
off, and HOME is a fresh folder removed afterwards, so nothing is learned or kept between
runs. The score and each rule that fired (with its points) are read from the report that
`--test-mode` appends. `scripts/ensure-spamassassin.sh` installs the package (`make test`,
`make e2e`); `require_spamassassin()` skips a test without it, and fails it under CI=true.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

_CANDIDATES = ("/usr/bin/spamassassin", "/usr/local/bin/spamassassin")
_SETTINGS = ("use_bayes 0", "bayes_auto_learn 0", "dns_available no", "skip_rbl_checks 1")
_TOTAL = re.compile(r"^Content analysis details:\s+\((-?\d+(?:\.\d+)?) points", re.MULTILINE)
_RULE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z][A-Z0-9_]+)\s+(.*)$")
_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Rule:
    name: str
    points: float
    description: str


@dataclass(frozen=True)
class SpamReport:
    score: float
    rules: tuple[Rule, ...]
    label: str = ""

    @property
    def names(self) -> list[str]:
        return [rule.name for rule in self.rules]

    def describe(self) -> str:
        fired = "; ".join(f"{r.name} {r.points:+.1f} ({r.description})" for r in self.rules)
        return f"{self.label}: score {self.score:.1f}, rules: {fired or 'none'}"


def spamassassin_binary() -> str | None:
    found = shutil.which("spamassassin")
    if found:
        return found
    return next((path for path in _CANDIDATES if os.access(path, os.X_OK)), None)


def require_spamassassin() -> None:
    if spamassassin_binary() is not None:
        return
    message = (
        "the spam score test needs SpamAssassin: it is not installed "
        "(Debian: apt-get install spamassassin; `make test` and `make e2e` do it as root)"
    )
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def parse_report(output: str, label: str = "") -> SpamReport:
    """The total and the rules of a `--test-mode` report."""
    total = _TOTAL.search(output)
    if total is None:
        raise AssertionError(f"{label}: no SpamAssassin report in its output:\n{output[-2000:]}")
    table = output[total.end() :].split("\n---", 1)[-1]
    rules: list[Rule] = []
    for line in table.splitlines():
        found = _RULE.match(line)
        if found:
            rules.append(Rule(found.group(2), float(found.group(1)), found.group(3).strip()))
        elif rules and line.startswith(" " * 20) and line.strip():  # a description's next line
            last = rules.pop()
            rules.append(Rule(last.name, last.points, f"{last.description} {line.strip()}"))
    return SpamReport(float(total.group(1)), tuple(rules), label)


def score(raw: bytes, label: str = "") -> SpamReport:
    """SpamAssassin's score of one email (its raw bytes), local rules only."""
    binary = spamassassin_binary()
    if binary is None:
        raise RuntimeError("SpamAssassin is not installed")
    settings = [f"--cf={line}" for line in _SETTINGS]
    with tempfile.TemporaryDirectory(prefix="mailer-spamassassin-") as home:
        env = {"HOME": home, "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        done = subprocess.run(
            [binary, "--local", "--test-mode", "--nocreate-prefs", *settings],
            input=raw,
            env=env,
            cwd=home,
            capture_output=True,
            timeout=_TIMEOUT_SECONDS,
            check=False,
        )
    output = done.stdout.decode("utf-8", "replace")
    if done.returncode != 0:
        raise AssertionError(f"{label}: spamassassin exited {done.returncode}: {done.stderr[-2000:]!r}")
    return parse_report(output, label)


def score_all(emails: Iterable[tuple[str, bytes]], processes: int = 2) -> list[SpamReport]:
    """Each (label, raw bytes) scored, `processes` SpamAssassin runs at a time, in order."""
    items = list(emails)
    with ThreadPoolExecutor(max_workers=processes) as pool:
        return list(pool.map(lambda item: score(item[1], item[0]), items))
