"""The command line's basics: help, version, error style."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from persam_video import __version__
from persam_video.cli import cli


def test_help_and_version():
    runner = CliRunner()
    help_text = runner.invoke(cli, ["--help"])
    assert help_text.exit_code == 0
    assert "weights" in help_text.output
    version = runner.invoke(cli, ["--version"])
    assert version.exit_code == 0 and __version__ in version.output


def test_console_script_runs_without_loading_torch():
    """``--version`` must answer without importing torch (fast start)."""
    code = (
        "import sys; from persam_video.cli import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("False")


def test_lazy_exports_match_all():
    import persam_video

    for name in persam_video.__all__:
        assert getattr(persam_video, name) is not None
