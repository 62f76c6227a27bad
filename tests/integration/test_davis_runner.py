"""``persam-video davis`` (resumable runner) and ``persam-video eval`` on a procedural DAVIS set."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from persam_video.apps.davis import run_davis
from persam_video.cli import cli
from persam_video.config import PerSAMConfig
from persam_video.eval.davis_dataset import DavisDataset
from persam_video.eval.evaluate import evaluate_davis
from persam_video.io import read_mask
from persam_video.synthetic.export import write_davis
from persam_video.video.tracker import VideoTracker
from tests.davis_layout import write_davis as write_layout
from tests.helpers import entries

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def davis_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("davis")
    write_davis(root, SEEDS)
    return root


@pytest.mark.slow
def test_davis_command_runs_and_evaluates(davis_root, tmp_path, fake_model):
    out = tmp_path / "results"
    result = CliRunner().invoke(
        cli,
        [
            "davis",
            "--davis-root",
            str(davis_root),
            "--out",
            str(out),
            "-q",
            "--json",
            str(tmp_path / "report.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "3 sequences tracked" in result.output and "J&F-Mean" in result.output
    dataset = DavisDataset(davis_root)
    for seq in dataset.sequences:
        names = sorted(p.name for p in (out / seq).iterdir())
        assert names == [p.with_suffix(".png").name for p in dataset.frame_paths(seq)]
        np.testing.assert_array_equal(
            read_mask(out / seq / names[0]), dataset.first_annotation(seq)
        )
    report = json.loads((tmp_path / "report.json").read_text())
    # The report is the evaluation of exactly the results written (not a stale or other one).
    expected = evaluate_davis(dataset, out, progress=False).global_metrics
    assert report["global"] == pytest.approx(expected)
    again = CliRunner().invoke(
        cli,
        [
            "eval",
            "--davis-root",
            str(davis_root),
            "--results",
            str(out),
            "-q",
            "--csv",
            str(tmp_path / "g.csv"),
        ],
    )
    assert again.exit_code == 0 and "J&F-Mean" in again.output
    assert (tmp_path / "g.csv").read_text().startswith("J&F-Mean,")


@pytest.mark.slow
def test_runner_resumes_after_an_interruption(davis_root, tmp_path, tiny_sam):
    dataset = DavisDataset(davis_root)
    tracker = VideoTracker(tiny_sam, PerSAMConfig())
    reference = tmp_path / "reference"
    run_davis(tracker, dataset, reference, progress=False)

    def stop_after_first(seq):
        raise KeyboardInterrupt

    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        run_davis(tracker, dataset, out, progress=False, on_sequence=stop_after_first)
    assert entries(out) == sorted([dataset.sequences[0], "run.json"])
    run = run_davis(tracker, dataset, out, progress=False)
    assert run.skipped == [dataset.sequences[0]] and run.done == list(dataset.sequences[1:])
    for seq in dataset.sequences:
        for png in sorted((reference / seq).iterdir()):
            assert png.read_bytes() == (out / seq / png.name).read_bytes()


@pytest.mark.slow
def test_runner_refuses_to_mix_configs(davis_root, tmp_path, tiny_sam):
    dataset = DavisDataset(davis_root)
    out = tmp_path / "out"
    run_davis(VideoTracker(tiny_sam, PerSAMConfig()), dataset, out, progress=False)
    other = VideoTracker(tiny_sam, PerSAMConfig.paper_video())
    with pytest.raises(ValueError, match="another run .*config"):
        run_davis(other, dataset, out, progress=False)


def test_eval_errors_are_one_line(tmp_path):
    result = CliRunner().invoke(
        cli, ["eval", "--davis-root", str(tmp_path / "nope"), "--results", str(tmp_path)]
    )
    assert result.exit_code == 2 and result.output.startswith("error: ")
    assert result.output.count("\n") == 1


def test_runner_checks_every_first_annotation_before_writing(tmp_path, tiny_sam):
    good = np.zeros((3, 16, 16), np.uint8)
    good[:, 4:10, 4:10] = 1
    single = np.where(good > 0, 255, 0).astype(np.uint8)  # DAVIS 2016 style, the last sequence
    root = write_layout(tmp_path / "DAVIS", {"dog": good, "blackswan": single})
    tracker = VideoTracker(tiny_sam, PerSAMConfig())
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"^blackswan: .*--year 2016"):
        run_davis(tracker, DavisDataset(root), out, progress=False)
    assert not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"^blackswan: "):
        run_davis(tracker, DavisDataset(root), out, progress=False)
    assert entries(out) == ["keep.txt"]


def test_runner_names_the_sequence_of_a_tracking_error(tmp_path, tiny_sam, monkeypatch):
    labels = np.zeros((3, 16, 16), np.uint8)
    labels[:, 4:10, 4:10] = 1
    root = write_layout(tmp_path / "DAVIS", {"dog": labels})
    tracker = VideoTracker(tiny_sam, PerSAMConfig())
    # An error that names a file of the sequence is kept as it is ...
    Image.new("RGB", (20, 16)).save(root / "JPEGImages" / "480p" / "dog" / "00002.jpg")
    with pytest.raises(ValueError, match=r"/dog/00002\.jpg: frame is \(16, 20\)"):
        run_davis(tracker, DavisDataset(root), tmp_path / "out", progress=False)
    # ... any other one gets the sequence's name in front.
    Image.new("RGB", (16, 16)).save(root / "JPEGImages" / "480p" / "dog" / "00002.jpg")

    def fail(*args, **kwargs):
        raise ValueError("object 1 of the first mask: too small")

    monkeypatch.setattr(tracker, "step_features", fail)
    with pytest.raises(ValueError, match=r"^dog: object 1 of the first mask: too small$"):
        run_davis(tracker, DavisDataset(root), tmp_path / "out", progress=False)
    assert entries(tmp_path / "out") == ["run.json"]
