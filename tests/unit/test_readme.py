"""The README's commands agree with what CI runs."""

from __future__ import annotations

from tests.helpers import REPO_ROOT

ROOT = REPO_ROOT


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    command = ci[-1].strip()
    assert "pytest" in command
    assert command in (ROOT / "README.md").read_text()


def test_readme_find_section_names_exactly_the_options_of_find():
    """Every option of ``persam-video find --help`` is documented in the README's section on
    ``find``, and the section names no option that ``find`` lacks."""
    import re

    from persam_video.cli.find import find

    text = (ROOT / "README.md").read_text()
    section = text.split("## Find targets in many clips", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-q)\b", section))
    shown = [
        param
        for param in find.params
        if param.opts[0].startswith("-") and not getattr(param, "hidden", False)
    ]
    undocumented = [param.opts[0] for param in shown if not documented & set(param.opts)]
    unknown = documented - {name for param in find.params for name in param.opts}
    assert undocumented == [] and unknown == set(), (undocumented, unknown)
