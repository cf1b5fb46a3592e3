"""docs/architecture.md's package table says what the code holds: every package of the core on
its row (the import contract's), and every module of each package, no more, no fewer."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "shared" / "mailer_core"


def _documented() -> dict[str, tuple[int, set[str]]]:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = text.split("<!-- packages: start -->", 1)[1].split("<!-- packages: end -->", 1)[0]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].isdigit():
            continue
        rows[cells[1].strip("`")] = (int(cells[0]), set(re.findall(r"`(\w+)`", cells[2])))
    return rows


def _in_code() -> dict[str, set[str]]:
    return {
        init.parent.name: {p.stem for p in init.parent.glob("*.py") if p.name != "__init__.py"}
        for init in CORE.glob("*/__init__.py")
    }


def _contract_rows() -> dict[str, int]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    top = len(layers) - 1
    return {name.strip(): top - i for i, row in enumerate(layers) for name in row.split("|")}


def test_the_table_lists_every_package_and_every_module() -> None:
    documented = {package: modules for package, (_, modules) in _documented().items()}
    assert documented == _in_code()


def test_the_table_puts_each_package_on_its_row_in_the_import_contract() -> None:
    assert {package: row for package, (row, _) in _documented().items()} == _contract_rows()


def test_a_package_init_is_a_docstring_only() -> None:
    """Importing a package loads nothing else, so a cold start pays only for what it uses."""

    for init in [CORE / "__init__.py", *CORE.glob("*/__init__.py")]:
        body = ast.parse(init.read_text(encoding="utf-8")).body
        assert len(body) == 1 and isinstance(body[0], ast.Expr), init
