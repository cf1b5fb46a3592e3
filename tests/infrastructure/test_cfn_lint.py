"""cfn-lint finds nothing in infra/template.yaml, and needs no network to say so."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.infrastructure.netguard import run_guarded
from tests.infrastructure.sam_offline import TEMPLATE_PATH

CFN_LINT = """
import sys
from cfnlint.runner import main
sys.argv = ["cfn-lint", *sys.argv[1:]]
sys.exit(main())
"""


def test_cfn_lint_is_clean_offline(tmp_path: Path) -> None:
    run = run_guarded(CFN_LINT, str(TEMPLATE_PATH), workdir=tmp_path)

    assert (run.returncode, run.stdout + run.stderr) == (0, "")
    assert run.network_attempts == []


def test_cfn_lint_reports_a_broken_template(tmp_path: Path) -> None:
    """The lint run above could fail: the same call flags a visibility timeout SQS does not allow."""
    broken = tmp_path / "template.yaml"
    broken.write_text(
        TEMPLATE_PATH.read_text(encoding="utf-8").replace(
            "VisibilityTimeout: 360", "VisibilityTimeout: 99999"
        ),
        encoding="utf-8",
    )

    run = run_guarded(CFN_LINT, str(broken), workdir=tmp_path)

    assert run.returncode != 0
    assert "E3034" in run.stdout
    assert run.network_attempts == []


# ---- operations: cfn-lint checks the values of what the stack's operations add


@pytest.mark.parametrize(
    ("sound", "broken", "rule"),
    [
        pytest.param(
            "RetentionInDays: !Ref LogRetentionDays", "RetentionInDays: 31", "E3030", id="retention"
        ),
        pytest.param(
            "ComparisonOperator: GreaterThanThreshold",
            "ComparisonOperator: MoreThanThreshold",
            "E3030",
            id="alarm comparison",
        ),
        pytest.param("Statistic: Maximum", "Statistic: Largest", "E3030", id="alarm statistic"),
        pytest.param(
            "AlarmActions: [!Ref AlarmTopic]", "AlarmActions: [!Ref AlarmTopics]", "E1020", id="alarm action"
        ),
    ],
)
def test_cfn_lint_checks_the_operations_values(tmp_path: Path, sound: str, broken: str, rule: str) -> None:
    text = TEMPLATE_PATH.read_text(encoding="utf-8")
    assert sound in text
    (tmp_path / "template.yaml").write_text(text.replace(sound, broken, 1), encoding="utf-8")

    run = run_guarded(CFN_LINT, str(tmp_path / "template.yaml"), workdir=tmp_path)

    assert run.returncode != 0
    assert rule in run.stdout, run.stdout
    assert run.network_attempts == []
