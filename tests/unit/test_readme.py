"""The README's commands agree with what CI runs."""

from __future__ import annotations

from tests.helpers import REPO_ROOT

ROOT = REPO_ROOT


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    command = ci[-1].strip()
    assert "pytest" in command
    assert command in (ROOT / "README.md").read_text()
