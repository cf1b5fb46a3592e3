"""Cold import time of each Lambda handler against the libraries every handler needs.

A cold start pays for importing the handler module. The floor is importing boto3,
pynamodb.models and aws_lambda_powertools; the ratio handler/floor shows what our own code
and its extra libraries add (aim: at most 1.5).

Each measurement runs in a fresh interpreter (environment: PATH and AWS_DEFAULT_REGION only)
and times the import alone, not the interpreter's start-up. Runs alternate between the
candidates and the best of N counts, which filters out a busy machine. The handlers are
imported by file path with shared/ (the layer) on sys.path, as Lambda does.

    python bench/cold_import.py [--runs 5] [--top 8] [--fail-above 1.5]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ROOT / "functions"
SHARED = ROOT / "shared"
BASELINE_MODULES = ("boto3", "pynamodb.models", "aws_lambda_powertools")

_TIMER = """
import importlib.util, sys, time
shared, target = sys.argv[1], sys.argv[2]
sys.path.insert(0, shared)
if target.endswith(".py"):
    sys.path.insert(0, target.rsplit("/", 1)[0])
    start = time.perf_counter()
    spec = importlib.util.spec_from_file_location("handler", target)
    module = importlib.util.module_from_spec(spec)
    sys.modules["handler"] = module
    spec.loader.exec_module(module)
else:
    start = time.perf_counter()
    for name in target.split(","):
        importlib.import_module(name)
print(f"SECONDS {time.perf_counter() - start:.6f}")
"""
_IMPORTTIME = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|\s+(.*)$")


@dataclass
class Candidate:
    name: str
    target: str  # a handler file, or comma-separated module names for the baseline
    seconds: list[float] = field(default_factory=list)
    error: str = ""

    @property
    def best_ms(self) -> float:
        return min(self.seconds) * 1000


def _env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", os.defpath), "AWS_DEFAULT_REGION": "us-east-1"}


def _run(target: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *flags, "-c", _TIMER, str(SHARED), target],
        env=_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def measure(candidate: Candidate) -> None:
    proc = _run(candidate.target)
    match = re.search(r"^SECONDS ([\d.]+)$", proc.stdout, re.MULTILINE)
    if proc.returncode != 0 or not match:
        candidate.error = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        return
    candidate.seconds.append(float(match.group(1)))


def self_time_by_package(target: str) -> dict[str, float]:
    """Milliseconds of import work per top-level package, from `python -X importtime`."""
    totals: dict[str, float] = {}
    for line in _run(target, "-X", "importtime").stderr.splitlines():
        match = _IMPORTTIME.match(line)
        if match:
            package = match.group(3).strip().split(".", 1)[0]
            totals[package] = totals.get(package, 0.0) + int(match.group(1)) / 1000
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh interpreters per candidate (best counts)")
    parser.add_argument("--top", type=int, default=8, help="heaviest extra packages to list for the worst handler")
    parser.add_argument("--fail-above", type=float, default=None, help="exit 2 when the worst ratio exceeds this")
    args = parser.parse_args(argv)

    baseline = Candidate(" + ".join(BASELINE_MODULES), ",".join(BASELINE_MODULES))
    handlers: list[Candidate] = []
    for folder in sorted(p for p in FUNCTIONS.iterdir() if p.is_dir()) if FUNCTIONS.is_dir() else []:
        path = folder / "handler.py"
        if path.is_file():
            handlers.append(Candidate(folder.name, str(path)))
        else:
            print(f"{folder.name:<10} skipped: {path.relative_to(ROOT)} does not exist (yet)")

    for _ in range(args.runs):
        for candidate in [baseline, *handlers]:
            if not candidate.error:
                measure(candidate)
    if baseline.error:
        print(f"baseline import failed: {baseline.error}")
        return 1

    print(f"python {sys.version.split()[0]}, best of {args.runs} fresh interpreters")
    print(f"{'baseline':<10} {baseline.best_ms:8.1f} ms  ({baseline.name})")
    worst: Candidate | None = None
    for candidate in handlers:
        if candidate.error:
            print(f"{candidate.name:<10} FAILED to import: {candidate.error}")
            continue
        ratio = candidate.best_ms / baseline.best_ms
        print(f"{candidate.name:<10} {candidate.best_ms:8.1f} ms  ratio {ratio:.2f}")
        if worst is None or candidate.best_ms > worst.best_ms:
            worst = candidate

    if worst is None:
        print("worst handler/baseline import ratio: n/a (no handler imported)")
        return 1 if any(c.error for c in handlers) else 0
    worst_ratio = worst.best_ms / baseline.best_ms
    if args.top > 0:
        floor = self_time_by_package(baseline.target)
        extra = {k: v for k, v in self_time_by_package(worst.target).items() if k not in floor}
        heaviest = sorted(extra.items(), key=lambda kv: -kv[1])[: args.top]
        listed = ", ".join(f"{name} {ms:.1f} ms" for name, ms in heaviest) or "none"
        print(f"packages {worst.name} imports beyond the baseline (self time, -X importtime): {listed}")
    print(f"worst handler/baseline import ratio: {worst_ratio:.2f}")
    if any(c.error for c in handlers):
        return 1
    if args.fail_above is not None and worst_ratio > args.fail_above:
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
