"""Importing a handler (a Lambda cold start) needs no settings and makes no network call.

Each handler is imported the way Lambda does (its folder on sys.path, `import handler`) in
a fresh interpreter whose environment holds only PATH, PYTHONPATH (the layer and the
repository) and a region, and whose sockets refuse to connect or resolve names. A second
import hides every installed package the Lambda layer would not ship (the dev venv has
cryptography, pydantic, PyYAML, moto …), as a deployed function would not find them.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest

from bench.cold_import import HIDE_MODULES, modules_outside_layer
from tests.infrastructure.netguard import run_guarded
from tests.infrastructure.sam_offline import ROOT, load_source, local_path, props, resources

HANDLERS = sorted((ROOT / "functions").glob("*/handler.py"))

IMPORT_HANDLER = """
import importlib, os, traceback
folder, module_name, attribute = sys.argv[1:4]
sys.path.insert(0, folder)
result = {"error": None, "callable": False}
try:
    module = importlib.import_module(module_name)
    result["callable"] = callable(getattr(module, attribute, None))
except BaseException:
    result["error"] = traceback.format_exc(limit=10)
print("RESULT " + json.dumps(result))
"""


def _entry_points() -> dict[Path, tuple[str, str]]:
    """Handler folder -> (module, function) from the template's `Handler` settings."""
    found = {}
    for res in resources(load_source(), "AWS::Serverless::Function").values():
        p = props(res)
        if isinstance(p.get("CodeUri"), str) and "." in str(p.get("Handler", "")):
            module, function = str(p["Handler"]).rsplit(".", 1)
            found[local_path(p["CodeUri"])] = (module, function)
    return found


@cache
def _outside_layer() -> str:
    return ",".join(modules_outside_layer())


def _import(
    folder: Path, module: str, function: str, workdir: Path, *, layer_only: bool = False
) -> tuple[dict[str, object], list[str], str]:
    args = [str(folder), module, function]
    if layer_only:
        run = run_guarded(HIDE_MODULES + IMPORT_HANDLER, _outside_layer(), *args, workdir=workdir)
    else:
        run = run_guarded(IMPORT_HANDLER, *args, workdir=workdir)
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"the import wrapper printed no result (exit {run.returncode}):\n{run.stderr[-3000:]}"
    return json.loads(lines[-1].removeprefix("RESULT ")), run.network_attempts, run.stderr


def test_there_are_handlers_to_check() -> None:
    assert HANDLERS, "no functions/*/handler.py exists"


@pytest.mark.parametrize("handler", HANDLERS, ids=lambda p: p.parent.name)
def test_handler_imports_offline_without_settings(handler: Path, tmp_path: Path) -> None:
    module, function = _entry_points().get(handler.parent, ("handler", "lambda_handler"))

    result, attempts, stderr = _import(handler.parent, module, function, tmp_path)

    assert result["error"] is None, f"{handler} failed to import:\n{result['error']}\n{stderr[-2000:]}"
    assert attempts == [], f"{handler} reached for the network at import: {attempts}"
    assert result["callable"], f"{handler} has no callable {function}"


@pytest.mark.parametrize("handler", HANDLERS, ids=lambda p: p.parent.name)
def test_handler_imports_with_only_the_packages_the_layer_ships(handler: Path, tmp_path: Path) -> None:
    module, function = _entry_points().get(handler.parent, ("handler", "lambda_handler"))

    result, _, stderr = _import(handler.parent, module, function, tmp_path, layer_only=True)

    assert result["error"] is None, (
        f"{handler} needs a package the layer lacks:\n{result['error']}\n{stderr[-2000:]}"
    )
    assert result["callable"]


def test_the_layer_check_hides_dev_only_packages(tmp_path: Path) -> None:
    folder = tmp_path / "fn"
    folder.mkdir()
    (folder / "handler.py").write_text(
        "import yaml\ndef lambda_handler(event, context):\n    return event\n", "utf-8"
    )

    assert _import(folder, "handler", "lambda_handler", tmp_path)[0]["error"] is None
    result, _, _ = _import(folder, "handler", "lambda_handler", tmp_path, layer_only=True)
    assert "No module named 'yaml' (not in the Lambda layer)" in str(result["error"])


def test_the_guard_notices_a_swallowed_network_call(tmp_path: Path) -> None:
    """The check above could fail: an import that tries to connect is caught even if it hides the error."""
    folder = tmp_path / "fn"
    folder.mkdir()
    (folder / "handler.py").write_text(
        "import socket, urllib.request\n"
        "try:\n"
        "    socket.create_connection(('127.0.0.1', 9), timeout=0.1)\n"
        "except OSError:\n"
        "    pass\n"
        "try:\n"
        "    urllib.request.urlopen('http://kommo.invalid/', timeout=0.1)\n"
        "except OSError:\n"
        "    pass\n"
        "def lambda_handler(event, context):\n"
        "    return event\n",
        encoding="utf-8",
    )

    result, attempts, _ = _import(folder, "handler", "lambda_handler", tmp_path)

    assert result == {"error": None, "callable": True}
    assert any("create_connection" in a for a in attempts)
    assert any("kommo.invalid" in a for a in attempts)


def test_the_environment_holds_no_settings(tmp_path: Path) -> None:
    """A handler that reads a setting at import fails here, as it would without the template's variables."""
    folder = tmp_path / "fn"
    folder.mkdir()
    (folder / "handler.py").write_text(
        "import os\n"
        "TABLE = os.environ['MAILER_MESSAGES_TABLE']\n"
        "def lambda_handler(event, context):\n"
        "    return event\n",
        encoding="utf-8",
    )

    result, _, _ = _import(folder, "handler", "lambda_handler", tmp_path)

    assert "KeyError: 'MAILER_MESSAGES_TABLE'" in str(result["error"])
