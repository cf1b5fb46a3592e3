"""The layer's requirements (shared/requirements.txt, what `sam build` installs) and the
project's dependencies (pyproject.toml, what the tests and the local stack run on) are one list:
the layer's, plus boto3, which the Lambda runtime ships."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

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


# Releases with a published advisory against the sandbox, which renders users' templates:
# CVE-2024-56201 and CVE-2024-56326 (fixed in 3.1.5), CVE-2025-27516 (fixed in 3.1.6).
SANDBOX_ADVISORIES = {"jinja2": ("3.1.6", ["3.0.3", "3.1.0", "3.1.4", "3.1.5"])}


def test_no_list_admits_a_release_with_a_sandbox_advisory() -> None:
    for requirements in (_project(), _layer()):
        for name, (fixed, vulnerable) in SANDBOX_ADVISORIES.items():
            specifier = SpecifierSet(requirements[name])
            assert fixed in specifier, (name, fixed)
            assert not [version for version in vulnerable if version in specifier], (name, str(specifier))
