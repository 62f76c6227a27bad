"""Every command that tracks runs the memory engine: davis (then eval), batch, find and the app,
with a tiny random SAM 2 model folder (no download), its settings as ``--set memory.*``.

Random weights track nothing: these tests check that each path runs the memory engine end to
end and writes what it writes for PerSAM's engine, not quality."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from persam_video.cli import cli
from persam_video.memory.config import MemoryConfig
from persam_video.memory.models import save_random_model, tiny_config
from tests.davis_layout import write_davis
from tests.e2e.test_track_cli import make_input
from tests.video_factory import synthetic_labels

pytest.importorskip("transformers", reason="transformers (the sam2 extra)")

MODEL = "sam2.1_hiera_tiny"
SIZE = (72, 96)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Seed 2: the tiny random model that makes masks of clicks on these clips."""
    return save_random_model(tmp_path_factory.mktemp("sam2") / "model", tiny_config(), seed=2)


@pytest.fixture(scope="module")
def target(tmp_path_factory, folder):
    """A target made with the memory model from frame 0 of a synthetic clip."""
    tmp = tmp_path_factory.mktemp("target")
    video, mask, _ = make_input(tmp, n_frames=3, objects=1)
    photo = tmp / "photo.png"
    assert CliRunner().invoke(cli, ["frame", str(video), "0", "-o", str(photo)]).exit_code == 0
    path = tmp / "disk.target"
    made = CliRunner().invoke(
        cli,
        [
            "personalize",
            str(photo),
            "--mask",
            str(mask),
            "--object",
            "1",
            "-o",
            str(path),
            "--model",
            MODEL,
            "--checkpoint",
            str(folder),
            "-q",
        ],
    )
    assert made.exit_code == 0, made.output
    return path


def memory_args(folder: Path, *extra: str) -> list[str]:
    return ["--model", MODEL, "--checkpoint", str(folder), "-q", *extra]


def test_davis_runs_the_memory_engine_and_records_its_settings(tmp_path, folder):
    labels = np.stack([synthetic_labels(t, SIZE) for t in range(4)])
    root = write_davis(tmp_path / "davis", {"two": labels, "one": (labels == 1).astype(np.uint8)})
    out = tmp_path / "results"
    report = tmp_path / "report.json"
    args = ["--set", "memory.lost_after=2", "--json", str(report)]
    result = CliRunner().invoke(
        cli,
        ["davis", "--davis-root", str(root), "--out", str(out), *memory_args(folder, *args)],
    )
    assert result.exit_code == 0, result.output
    for seq in ("two", "one"):
        assert sorted(p.name for p in (out / seq).iterdir()) == [f"{t:05d}.png" for t in range(4)]
    record = json.loads((out / "run.json").read_text())
    assert record["model"] == MODEL and record["files_sha256"]
    assert record["config"] == {**MemoryConfig().to_dict(), "lost_after": 2}
    assert {o["sequence"] for o in json.loads(report.read_text())["per_object"]} == {"two", "one"}
    # A rerun with other settings into the same folder is refused, not mixed.
    again = CliRunner().invoke(
        cli,
        ["davis", "--davis-root", str(root), "--out", str(out), *memory_args(folder), "--no-eval"],
    )
    assert again.exit_code == 2 and len(again.output.strip().splitlines()) == 1, again.output


def test_batch_tracks_masks_and_targets_with_the_memory_engine(tmp_path, folder, target):
    video, mask, _ = make_input(tmp_path, n_frames=3)
    manifest = tmp_path / "clips.jsonl"
    rows = [
        {"input": str(video), "mask": str(mask), "name": "masked"},
        {"input": str(video), "target": str(target), "name": "searched"},
        {"input": str(video), "mask": str(mask), "name": "patient"}
        | {"overrides": ["memory.redetect=false"]},
    ]
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["batch", str(manifest), "--out", str(out), *memory_args(folder)]
    )
    assert result.exit_code == 0, result.output
    for name, ids in (("masked", [1, 2]), ("searched", [1]), ("patient", [1, 2])):
        document = json.loads((out / name / "results.json").read_text())
        assert document["run"]["engine"] == "memory" and document["object_ids"] == ids
        assert document["run"]["model"] == MODEL and len(document["frames"]) == 3
    patient = json.loads((out / "patient" / "results.json").read_text())
    assert patient["run"]["config"]["redetect"] is False
    searched = json.loads((out / "searched" / "results.json").read_text())
    assert searched["direction"] == "both"  # a target both ways from where it is found
    masked = json.loads((out / "masked" / "results.json").read_text())
    assert "direction" not in masked  # a first-frame mask streams forward


def test_a_persam_override_in_a_memory_batch_is_refused_before_anything_runs(tmp_path, folder):
    video, mask, _ = make_input(tmp_path, n_frames=2)
    manifest = tmp_path / "clips.jsonl"
    row = {"input": str(video), "mask": str(mask), "overrides": ["track.momentum=0.5"]}
    manifest.write_text(json.dumps(row) + "\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["batch", str(manifest), "--out", str(out), *memory_args(folder)]
    )
    assert result.exit_code == 2 and "configures PerSAM's engine" in result.output
    assert not out.exists()


def test_find_searches_clips_with_the_memory_engine(tmp_path, folder, target):
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        video, _, _ = make_input(tmp_path / name, n_frames=4)
        video.rename(clips / f"{name}.mp4")
    out = tmp_path / "found"
    result = CliRunner().invoke(
        cli,
        [
            "find",
            str(clips),
            "--target",
            str(target),
            "--out",
            str(out),
            "-q",
            "--checkpoint",
            str(folder),
        ],
    )  # the model comes from the target file
    assert result.exit_code == 0, result.output
    found = json.loads((out / "found.json").read_text())
    assert [clip["name"] for clip in found["clips"]] == ["a", "b"]
    for name in ("a", "b"):
        document = json.loads((out / name / "results.json").read_text())
        assert document["run"]["engine"] == "memory" and len(document["frames"]) == 4
        assert all(len(frame["objects"]) == 1 for frame in document["frames"])
    # A target of the memory model is refused with another model, in one line, before loading.
    refused = CliRunner().invoke(
        cli,
        [
            "find",
            str(clips),
            "--target",
            str(target),
            "--out",
            str(tmp_path / "x"),
            "--model",
            "demo",
            "-q",
        ],
    )
    assert refused.exit_code == 2 and f"made with model {MODEL}" in refused.output


def test_memory_settings_are_refused_with_persam_models_and_segment_says_why(
    tmp_path, folder, target
):
    video, mask, _ = make_input(tmp_path, n_frames=2)
    out = tmp_path / "out"
    persam = CliRunner().invoke(
        cli,
        [
            "track",
            str(video),
            "--mask",
            str(mask),
            "--out",
            str(out),
            "--model",
            "demo",
            "--set",
            "memory.lost_after=2",
            "-q",
        ],
    )
    assert persam.exit_code == 2 and "'memory.lost_after' configures the memory engine" in (
        persam.output
    )
    assert len(persam.output.strip().splitlines()) == 1 and not out.exists()
    photo = tmp_path / "photo.png"
    assert CliRunner().invoke(cli, ["frame", str(video), "0", "-o", str(photo)]).exit_code == 0
    segmented = CliRunner().invoke(
        cli,
        [
            "segment",
            str(photo),
            "--target",
            str(target),
            "--out",
            str(tmp_path / "s"),
            *memory_args(folder),
        ],
    )
    assert segmented.exit_code == 2 and "it runs on videos" in segmented.output


def test_the_app_clicks_tracks_and_saves_targets_with_the_memory_engine(tmp_path, folder):
    from persam_video.apps.app_state import POSITIVE, AppSession, AppSettings, ModelHolder
    from persam_video.apps.target_file import load_target
    from persam_video.memory.config import MemoryConfig

    video, _, _ = make_input(tmp_path, n_frames=4)
    settings = AppSettings(model_name=MODEL, checkpoint=str(folder), config=MemoryConfig())
    session = AppSession(ModelHolder(settings), tmp_path / "session")
    try:
        session.open_path(str(video))
        ys, xs = np.nonzero(synthetic_labels(0, SIZE) == 1)
        said = session.click(0, 1, POSITIVE, float(xs.mean()), float(ys.mean()))
        assert said.startswith("object 1 on frame 0:") and "pixels" in said
        run = session.track(direction="forward")
        document = json.loads(run.results.read_text())
        assert document["run"]["engine"] == "memory" and len(document["frames"]) == 4
        saved = load_target(session.save_target(1))
        assert saved.model["model"] == MODEL and saved.config == MemoryConfig()
        assert saved.target.reference_similarity is not None
    finally:
        session.close()
