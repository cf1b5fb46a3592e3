"""The core's layout holds: packages in rows, no import circles (the contracts in pyproject.toml).

import-linter reads every import statement, those inside functions included, so an upward
import written inside a function to dodge a circle breaks the build as any other would.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "shared" / "mailer_core"


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]


def test_the_import_contracts_are_kept_with_nothing_ignored() -> None:
    contracts = _config()["contracts"]
    assert {c["type"] for c in contracts} == {"layers", "acyclic_siblings"}
    assert not any(c.get("ignore_imports") for c in contracts), "no edge may be ignored"
    run = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache", "--no-logo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"Contracts: {len(contracts)} kept, 0 broken." in run.stdout


def test_every_package_of_the_core_has_its_row() -> None:
    (rows,) = [c["layers"] for c in _config()["contracts"] if c["type"] == "layers"]
    in_rows = {name.strip() for row in rows for name in row.split("|")}
    packages = {p.parent.name for p in CORE.glob("*/__init__.py")}
    assert packages == in_rows
    assert not [p.name for p in CORE.glob("*.py") if p.name != "__init__.py"], "every module is in a package"


def _function_level_core_imports() -> list[tuple[str, int, str]]:
    found = []
    for path in sorted(CORE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        for function in ast.walk(ast.parse(source)):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mailer_core"):
                    text = " ".join(line.strip() for line in lines[node.lineno - 1 : node.end_lineno])
                    found.append((str(path.relative_to(CORE)), node.lineno, text))
    return found


def test_an_import_inside_a_function_says_which_cold_start_cost_it_avoids() -> None:
    """The rows make every other reason for one (dodging a circle) impossible or a bug."""
    imports = _function_level_core_imports()
    assert imports, "the scan finds the known lazy imports (rendering's Jinja2, the mailbox check)"
    unexplained = [f"{file}:{line}: {text}" for file, line, text in imports if "# cold start: " not in text]
    assert not unexplained, "\n".join(unexplained)
