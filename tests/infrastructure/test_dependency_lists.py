"""The layer's requirements (shared/requirements.txt, what `sam build` installs) and the
project's dependencies (pyproject.toml, what the tests and the local stack run on) are one list:
the layer's, plus boto3, which the Lambda runtime ships."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_PROVIDED = {"boto3"}


def _layer() -> dict[str, str]:
    lines = (ROOT / "shared" / "requirements.txt").read_text(encoding="utf-8").splitlines()
    requirements = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    return {r.name.lower(): str(r.specifier) for r in requirements}


def _project() -> dict[str, str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    requirements = [Requirement(line) for line in config["project"]["dependencies"]]
    return {r.name.lower(): str(r.specifier) for r in requirements}


def test_the_layer_ships_what_the_project_depends_on_with_the_same_versions() -> None:
    project = _project()
    assert set(project) >= RUNTIME_PROVIDED
    assert _layer() == {name: spec for name, spec in project.items() if name not in RUNTIME_PROVIDED}
