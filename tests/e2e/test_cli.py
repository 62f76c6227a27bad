"""The command line's basics: help, version, error style."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from persam_video import __version__
from persam_video.cli import cli, main


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
    import importlib

    import persam_video

    assert set(persam_video.__all__) == {*persam_video._EXPORTS, "__version__"}
    for name, module in persam_video._EXPORTS.items():
        # Each name is the very object of the module that defines it.
        assert getattr(persam_video, name) is getattr(importlib.import_module(module), name)
    from persam_video import FrameResult, VideoTracker, track_to_folder

    assert VideoTracker.__module__ == "persam_video.video.tracker"
    assert track_to_folder.__module__ == "persam_video.apps.track"
    assert FrameResult.__module__ == "persam_video.video.state"
    with pytest.raises(AttributeError):
        persam_video.NotAnExport  # noqa: B018


def test_command_line_backs_large_buffers_with_huge_pages(monkeypatch):
    """The entry point asks for huge pages before torch allocates, unless the user chose."""
    from persam_video.runtime import HUGE_PAGES_ENV

    monkeypatch.setenv(HUGE_PAGES_ENV, "")  # so that the original state is restored afterwards
    monkeypatch.delenv(HUGE_PAGES_ENV)
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert os.environ[HUGE_PAGES_ENV] == "1"
    monkeypatch.setenv(HUGE_PAGES_ENV, "0")
    with pytest.raises(SystemExit):
        main(["--version"])
    assert os.environ[HUGE_PAGES_ENV] == "0"
