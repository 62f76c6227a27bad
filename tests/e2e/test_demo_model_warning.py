"""Every run with the demo model says that it is not SAM: one line on stderr, ``run.warning`` in
results.json, and a line in report.html; runs with other models say nothing of the kind."""

from __future__ import annotations

import json

from click.testing import CliRunner

from persam_video.cli import cli
from persam_video.model.demo import DEMO_WARNING
from persam_video.model.registry import model_metadata
from tests.helpers import small_clip


def test_a_demo_model_run_says_it_is_not_sam_everywhere(tmp_path):
    video, mask = small_clip(tmp_path, n_frames=2)
    out = tmp_path / "out"
    args = ["track", str(video), "--mask", str(mask), "--out", str(out), "--model", "demo", "-q"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "not SAM" in line]
    assert lines == [f"warning: {DEMO_WARNING}"]  # once, even with -q
    assert json.loads((out / "results.json").read_text())["run"]["warning"] == DEMO_WARNING
    assert f"warning: {DEMO_WARNING}" in (out / "report.html").read_text()


def test_batch_with_the_demo_model_says_it_too(tmp_path):
    video, mask = small_clip(tmp_path, n_frames=2)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"input,mask,name\n{video},{mask},c0\n")
    out = tmp_path / "runs"
    args = ["batch", str(manifest), "--out", str(out), "--model", "demo", "-q", "--no-overlay"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert f"warning: {DEMO_WARNING}" in result.output
    assert json.loads((out / "c0" / "results.json").read_text())["run"]["warning"] == DEMO_WARNING


def test_other_models_carry_no_warning(tmp_path):
    checkpoint = tmp_path / "sam_vit_b.pth"
    checkpoint.write_bytes(b"not a real checkpoint, only hashed")
    assert "warning" not in model_metadata("vit_b", checkpoint)
    assert model_metadata("demo")["warning"] == DEMO_WARNING


def test_bad_input_with_the_demo_model_stays_one_line(tmp_path):
    video, _ = small_clip(tmp_path, n_frames=2)
    args = [
        "track",
        str(video),
        "--neg-point",
        "10,10",
        "--out",
        str(tmp_path / "o"),
        "--model",
        "demo",
        "-q",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: --neg-point 10,10: a prompt needs a positive click or a box"
    ]
