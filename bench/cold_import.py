"""Cold import time of each Lambda handler against the libraries every handler needs.

A cold start pays for importing the handler module. The floor is importing boto3,
pynamodb.models and aws_lambda_powertools; the ratio handler/floor shows what our own code
and its extra libraries add (aim: at most 1.5).

Each measurement runs in a fresh interpreter (environment: PATH and AWS_DEFAULT_REGION only)
and times the import alone, not the interpreter's start-up. Runs alternate between the
candidates and the best of N counts, which filters out a busy machine. The handlers are
imported by file path with shared/ (the layer) on sys.path, as Lambda does.

The dev venv holds packages the Lambda layer does not ship (cryptography, pydantic, moto …),
and some libraries import them when they find them (PyJWT loads cryptography, ~25 ms). So,
unless --venv is given, every installed package outside the layer's dependency closure
(shared/requirements.txt, plus boto3 from the runtime) is hidden from the measured imports.

    python bench/cold_import.py [--runs 5] [--top 8] [--fail-above 1.5] [--venv]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ROOT / "functions"
SHARED = ROOT / "shared"
BASELINE_MODULES = ("boto3", "pynamodb.models", "aws_lambda_powertools")
LAYER_REQUIREMENTS = SHARED / "requirements.txt"
RUNTIME_PROVIDED = ("boto3",)  # the Lambda Python runtime ships boto3 and its dependencies

HIDE_MODULES = """
import sys
class _OutsideTheLayer:
    def __init__(self, names):
        self.names = names
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r} (not in the Lambda layer)", name=name)
        return None
sys.meta_path.insert(0, _OutsideTheLayer(set(filter(None, sys.argv.pop(1).split(",")))))
"""

_TIMER = """
import importlib.util, time
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


def layer_distributions(requirements: Path = LAYER_REQUIREMENTS) -> set[str]:
    """Canonical names of the distributions a `sam build` of the layer (plus the runtime) holds."""
    lines = [line.split("#", 1)[0].strip() for line in requirements.read_text(encoding="utf-8").splitlines()]
    todo = [Requirement(line).name for line in lines if line] + list(RUNTIME_PROVIDED)
    seen: set[str] = set()
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def modules_outside_layer() -> list[str]:
    """Top-level modules installed here that the Lambda layer would not contain.

    The layer's own code (shared/, which `pip install -e .` may also register) always stays.
    """
    keep = layer_distributions()
    own = {p.stem for p in SHARED.glob("*.py")} | {p.parent.name for p in SHARED.glob("*/__init__.py")}
    return sorted(
        module
        for module, dists in metadata.packages_distributions().items()
        if module.isidentifier()
        and module not in own
        and not any(canonicalize_name(d) in keep for d in dists)
    )


def _env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", os.defpath), "AWS_DEFAULT_REGION": "us-east-1"}


_HIDDEN: list[str] = []


def _run(target: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *flags, "-c", HIDE_MODULES + _TIMER, ",".join(_HIDDEN), str(SHARED), target],
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


def self_times(target: str) -> dict[str, float]:
    """Milliseconds of import work per module, from `python -X importtime`."""
    times: dict[str, float] = {}
    for line in _run(target, "-X", "importtime").stderr.splitlines():
        match = _IMPORTTIME.match(line)
        if match:
            times[match.group(3).strip()] = int(match.group(1)) / 1000
    return times


def extra_by_package(target: str, baseline: str) -> dict[str, float]:
    """Self time of the modules `target` imports and `baseline` does not, per top-level package."""
    floor = self_times(baseline)
    totals: dict[str, float] = {}
    for module, ms in self_times(target).items():
        if module not in floor:
            package = module.split(".", 1)[0]
            totals[package] = totals.get(package, 0.0) + ms
    return totals


# Many branches on purpose: the options and the report, one after the other.
def main(argv: list[str] | None = None) -> int:  # noqa: C901
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh interpreters per candidate (best counts)")
    parser.add_argument(
        "--top", type=int, default=8, help="heaviest extra packages to list for the worst handler"
    )
    parser.add_argument(
        "--fail-above", type=float, default=None, help="exit 2 when the worst ratio exceeds this"
    )
    parser.add_argument("--venv", action="store_true", help="do not hide packages the layer does not ship")
    args = parser.parse_args(argv)
    _HIDDEN[:] = [] if args.venv else modules_outside_layer()

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
    shown = ", ".join(m for m in _HIDDEN if m in {"cryptography", "pydantic", "moto", "yaml", "requests"})
    print(
        f"hidden: {len(_HIDDEN)} installed packages outside the layer ({shown} …)"
        if _HIDDEN
        else "hidden: none"
    )
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
        extra = extra_by_package(worst.target, baseline.target)
        heaviest = sorted(extra.items(), key=lambda kv: -kv[1])[: args.top]
        listed = ", ".join(f"{name} {ms:.1f}" for name, ms in heaviest) or "none"
        print(f"{worst.name} imports beyond the baseline, self ms per package (-X importtime): {listed}")
    print(f"worst handler/baseline import ratio: {worst_ratio:.2f}")
    if any(c.error for c in handlers):
        return 1
    if args.fail_above is not None and worst_ratio > args.fail_above:
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
