"""Run Python code in a fresh interpreter whose sockets refuse to connect or resolve.

Every attempt is recorded (and refused with OSError), so code that swallows the error is
still caught: the caller gets the list of attempts next to the process result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.infrastructure.sam_offline import ROOT

GUARD = """
import atexit, json, socket, sys
_report = sys.argv.pop(1)
_attempts = []
def _refuse(name):
    def refuse(*args, **kwargs):
        target = args[1] if name.startswith("socket.socket") and len(args) > 1 else args[:2]
        _attempts.append(f"{name}{target!r}")
        raise OSError(f"network access is not allowed here ({name})")
    return refuse
socket.socket.connect = _refuse("socket.socket.connect")
socket.socket.connect_ex = _refuse("socket.socket.connect_ex")
socket.create_connection = _refuse("socket.create_connection")
socket.getaddrinfo = _refuse("socket.getaddrinfo")
def _write_report():
    with open(_report, "w", encoding="utf-8") as fh:
        json.dump(_attempts, fh)
atexit.register(_write_report)
"""


@dataclass
class GuardedRun:
    returncode: int
    stdout: str
    stderr: str
    network_attempts: list[str]


def minimal_env() -> dict[str, str]:
    """PATH, the layer and the repository on PYTHONPATH, a region: nothing else."""
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "shared"), str(ROOT)]),
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def run_guarded(code: str, *args: str, workdir: Path, timeout: float = 120) -> GuardedRun:
    report = workdir / "network-attempts.json"
    proc = subprocess.run(
        [sys.executable, "-c", GUARD + code, str(report), *args],
        env=minimal_env(),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    attempts = json.loads(report.read_text(encoding="utf-8")) if report.exists() else ["<no report written>"]
    return GuardedRun(proc.returncode, proc.stdout, proc.stderr, attempts)
