"""``persam-video batch``: manifest checks, failures isolated, resume after SIGKILL, Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from persam_video.cli import cli
from persam_video.synthetic import make_clip
from persam_video.synthetic.export import write_clip_video
from tests.helpers import REPO_ROOT, leftovers

ROOT = REPO_ROOT
CLIP_SIZE = (90, 120)
CLIP_FRAMES = 8


def make_clips(folder: Path, count: int, frames: int = CLIP_FRAMES) -> list[tuple[Path, Path]]:
    clips = []
    for seed in range(count):
        clip = make_clip(seed, n_frames=frames, size_hw=CLIP_SIZE, n_objects=2)
        clips.append(write_clip_video(clip, folder / f"clip{seed}"))
    return clips


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Three good clips and one corrupt one, and a CSV manifest listing them."""
    root = tmp_path_factory.mktemp("batch")
    clips = make_clips(root, 3)
    corrupt = root / "broken.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video at all")
    lines = ["input,mask,name,overrides"]
    for i, (video, mask) in enumerate(clips):
        overrides = "track.momentum=0.8" if i == 1 else ""
        lines.append(f"{video.relative_to(root)},{mask.relative_to(root)},c{i},{overrides}")
    lines.append(f"broken.mp4,{clips[0][1].relative_to(root)},broken,")
    manifest = root / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return root, manifest


def masks_of(out: Path, name: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / name / "masks").iterdir())}


def run_batch_cli(*args: str):
    return CliRunner().invoke(cli, ["batch", *args, "--model", "demo", "-q", "--no-overlay"])


def test_manifest_problems_are_all_reported(tmp_path, dataset):
    root, _ = dataset
    bad = tmp_path / "bad.jsonl"
    rows = [
        {"input": str(root / "missing.mp4"), "mask": str(root / "clip0" / "first_mask.png")},
        {"input": str(root / "clip0" / "input.mp4"), "mask": "x.png", "target": "y.target"},
        {
            "input": str(root / "clip1" / "input.mp4"),
            "mask": str(root / "clip1" / "first_mask.png"),
            "name": "same",
            "overrides": ["track.nope=1"],
        },
        {
            "input": str(root / "clip2" / "input.mp4"),
            "mask": str(root / "clip2" / "first_mask.png"),
            "name": "same",
            "colour": "red",
        },
    ]
    bad.write_text("\n".join(json.dumps(r) for r in rows))
    result = run_batch_cli(str(bad), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert all(line.startswith("error: bad.jsonl:") for line in lines)
    text = result.output
    assert "missing.mp4 does not exist" in text
    assert "exactly one of mask and target" in text
    assert "track.nope" in text
    assert "'same' is also used on line 3" in text
    assert "unknown column(s) colour" in text
    assert not (tmp_path / "out").exists()


def test_local_batch_isolates_failures_and_resumes(tmp_path, dataset):
    _, manifest = dataset
    out = tmp_path / "out"
    first = run_batch_cli(str(manifest), "--out", str(out))
    assert first.exit_code == 1, first.output
    assert "3 done, 0 already done, 1 failed" in first.output
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [f["name"] for f in failures] == ["broken"] and failures[0]["reason"]
    for name in ("c0", "c1", "c2"):
        assert (out / name / "done.json").is_file()
        assert len(masks_of(out, name)) == CLIP_FRAMES
        assert (out / name / "results.json").is_file()
    assert (
        json.loads((out / "c1" / "results.json").read_text())["run"]["config"]["track"]["momentum"]
        == 0.8
    )
    assert not (out / "broken").exists()
    assert not leftovers(out)
    second = run_batch_cli(str(manifest), "--out", str(out))
    assert second.exit_code == 1
    assert "0 done, 3 already done, 1 failed" in second.output


@pytest.mark.slow
def test_kill_and_resume_gives_the_same_outputs(tmp_path):
    clips = make_clips(tmp_path, 4, frames=12)
    manifest = tmp_path / "m.csv"
    rows = "".join(f"{v},{m},{v.parent.name}\n" for v, m in clips)
    manifest.write_text("input,mask,name\n" + rows)
    reference = tmp_path / "reference"
    assert run_batch_cli(str(manifest), "--out", str(reference)).exit_code == 0

    out = tmp_path / "killed"
    command = [
        sys.executable,
        "-m",
        "persam_video.cli",
        "batch",
        str(manifest),
        "--out",
        str(out),
        "--model",
        "demo",
        "-q",
        "--no-overlay",
    ]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while not (out / "clip0" / "done.json").exists():
        assert process.poll() is None, "the batch ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "clip3" / "done.json").exists(), "killed too late to test resuming"
    resumed = run_batch_cli(str(manifest), "--out", str(out))
    assert resumed.exit_code == 0, resumed.output
    assert "already done" in resumed.output
    for video, _ in clips:
        name = video.parent.name
        assert masks_of(out, name) == masks_of(reference, name)
    assert not leftovers(out)


@pytest.mark.slow
@pytest.mark.ray
def test_ray_batch_matches_local_mode(tmp_path, dataset):
    pytest.importorskip("ray")
    _, manifest = dataset
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert run_batch_cli(str(manifest), "--out", str(local)).exit_code == 1
    result = run_batch_cli(str(manifest), "--out", str(remote), "--ray", "local", "--workers", "2")
    assert result.exit_code == 1, result.output
    assert "3 done, 0 already done, 1 failed" in result.output
    assert [
        json.loads(x)["name"] for x in (remote / "failures.jsonl").read_text().splitlines()
    ] == ["broken"]
    for name in ("c0", "c1", "c2"):
        assert masks_of(remote, name) == masks_of(local, name)
