"""The core modules a Lambda handler can reach, and the heavy libraries among what they import.

For each handler (functions/<name>/handler.py) two sets of mailer_core modules:
- at a cold start: what importing the handler loads (imports at module level, followed
  through module-level imports; imports under TYPE_CHECKING never run);
- in all: what it may load while it works, imports written inside functions included.

    python scripts/handler_reach.py [send track api ...] [--list]

Without names it reports every handler; --list prints the modules themselves.
"""

from __future__ import annotations

import argparse
import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "shared" / "mailer_core"
FUNCTIONS = ROOT / "functions"
HEAVY = ("jinja2", "babel", "smtplib", "imaplib", "flufl", "css_inline", "pymorphy3", "jwt")


@dataclass(frozen=True)
class Edge:
    target: str  # a module of the core, or a top-level third-party or stdlib name
    lazy: bool  # written inside a function: runs on first use, not at import


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(CORE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def core_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in CORE.rglob("*.py")}


def _resolve(name: str) -> str | None:
    while name:
        if name in core_modules():
            return name
        name = name.rpartition(".")[0]
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    return [f"{base}.{a.name}" for a in node.names] + [base]


def _edges_in(tree: ast.AST, lazy: bool = False) -> list[Edge]:
    edges: list[Edge] = []
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.If) and _is_type_checking(child):
            continue
        inside = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        if isinstance(child, ast.Import | ast.ImportFrom) and not getattr(child, "level", 0):
            names = _targets(child)
            core = {_resolve(n) for n in names} - {None}
            if core:  # `from mailer_core.x import y`: y is a module or a name of x
                precise = (
                    {_resolve(n) for n in names[:-1]} - {None} if isinstance(child, ast.ImportFrom) else core
                )
                edges += [Edge(str(m), inside) for m in (precise or core)]
            else:
                edges += [Edge(n.partition(".")[0], inside) for n in names[-1:]]
        edges += _edges_in(child, inside)
    return edges


@cache
def edges_of(path: Path) -> tuple[Edge, ...]:
    return tuple(_edges_in(ast.parse(path.read_text(encoding="utf-8"))))


def _parents(module: str) -> list[str]:
    """Importing a.b.c runs a/__init__ and a/b/__init__ first."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def reach(handler: Path, *, lazy: bool) -> tuple[set[str], set[str]]:
    """(core modules, heavy libraries) importing `handler` can load; with `lazy`, function-level too."""
    modules: set[str] = set()
    libraries: set[str] = set()
    todo = [e for e in edges_of(handler) if lazy or not e.lazy]
    while todo:
        edge = todo.pop()
        if edge.target not in core_modules():
            libraries.add(edge.target)
            continue
        for name in [*_parents(edge.target), edge.target]:
            if name in core_modules() and name not in modules:
                modules.add(name)
                todo += [e for e in edges_of(core_modules()[name]) if lazy or not e.lazy]
    return modules, {lib for lib in libraries if lib in HEAVY}


def handlers() -> dict[str, Path]:
    return {p.parent.name: p for p in sorted(FUNCTIONS.glob("*/handler.py"))}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", help="handlers (default: all)")
    parser.add_argument("--list", action="store_true", help="print the modules reached")
    args = parser.parse_args()
    total = len(core_modules())
    for name, path in handlers().items():
        if args.names and name not in args.names:
            continue
        cold, cold_heavy = reach(path, lazy=False)
        every, heavy = reach(path, lazy=True)
        print(
            f"{name:11} cold start {len(cold):3} of {total} modules"
            f" (heavy: {', '.join(sorted(cold_heavy)) or 'none'});"
            f" in all {len(every):3} (heavy: {', '.join(sorted(heavy)) or 'none'})"
        )
        if args.list:
            for module in sorted(every):
                print(f"    {'  ' if module in cold else '* '}{module}")
    if args.list:
        print("(* imported inside a function: loaded on first use)")


if __name__ == "__main__":
    main()
