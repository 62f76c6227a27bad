"""``--keyframes 1|N|auto`` on the command line: N=1 writes the very same masks, N>1 marks the
keyframes in results.json and report.html, and bad uses are refused in one line."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from persam_video.cli import cli
from tests.e2e.test_track_cli import make_input
from tests.video_factory import synthetic_labels


def run(*args: str):
    return CliRunner().invoke(cli, ["track", *args, "-q"])


def mask_bytes(out) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "masks").glob("*.png"))}


def test_keyframes_1_writes_the_same_masks_bit_for_bit(tmp_path, fake_model):
    video, mask, _ = make_input(tmp_path, n_frames=8)
    plain, keyed = tmp_path / "plain", tmp_path / "keyed"
    assert run(str(video), "--mask", str(mask), "--out", str(plain)).exit_code == 0
    result = run(str(video), "--mask", str(mask), "--out", str(keyed), "--keyframes", "1")
    assert result.exit_code == 0, result.output
    assert mask_bytes(plain) == mask_bytes(keyed) and len(mask_bytes(plain)) == 8
    frames = json.loads((keyed / "results.json").read_text())["frames"]
    assert all(f["keyframe"] and "rekey" not in f for f in frames)
    assert "SAM keyframes" not in (keyed / "report.html").read_text()


def test_keyframes_n_are_marked_in_results_and_report(tmp_path, fake_model):
    video, mask, _ = make_input(tmp_path, n_frames=8)
    out = tmp_path / "out"
    result = run(str(video), "--mask", str(mask), "--out", str(out), "--keyframes", "3")
    assert result.exit_code == 0, result.output
    document = json.loads((out / "results.json").read_text())
    assert document["run"]["config"]["keyframes"]["interval"] == 3
    frames = document["frames"]
    assert [f["index"] for f in frames if f["keyframe"]] == [0, 3, 6]
    for frame in frames:
        if not frame["keyframe"]:
            assert all(
                o["score"] is None and o["peak_similarity"] is None
                for o in frame["objects"].values()
            )
    page = (out / "report.html").read_text()
    assert 'id="object-1-keyframes"' in page and "3 of 8 frames" in page
    series = json.loads(re.search(r'id="series">(.*?)</script>', page, re.S).group(1))
    assert series["1"]["keyframes"] == [0, 3, 6]


def test_keyframes_auto_records_why(tmp_path, fake_model):
    video, mask, _ = make_input(tmp_path, n_frames=8)
    out = tmp_path / "out"
    result = run(
        str(video),
        "--mask",
        str(mask),
        "--out",
        str(out),
        "--keyframes",
        "auto",
        "--set",
        "keyframes.max_gap=2",
    )
    assert result.exit_code == 0, result.output
    frames = json.loads((out / "results.json").read_text())["frames"]
    assert frames[0]["keyframe"] and "rekey" not in frames[0]
    for frame in frames[1:]:
        assert ("rekey" in frame) == frame["keyframe"]
        assert frame.get("rekey", "gap") in ("flow", "border", "area", "gap")
    assert sum(f["keyframe"] for f in frames) >= 4  # every other frame at the least


@pytest.mark.parametrize("frame,direction", [(0, "both"), (2, "forward")])
def test_keyframes_on_a_prompted_run_from_one_frame(tmp_path, fake_model, frame, direction):
    """Clicks on one frame, tracked forward: the prompted path takes keyframes too, marks them
    in results.json, and leaves the frames before the prompt untracked."""
    video, _, _ = make_input(tmp_path, n_frames=8)
    ys, xs = (synthetic_labels(frame, (72, 96)) == 1).nonzero()
    click = f"{int(xs.mean())},{int(ys.mean())}@{frame}"
    out = tmp_path / "out"
    args = ["--point", click, "--direction", direction, "--keyframes", "3"]
    result = run(str(video), *args, "--out", str(out))
    assert result.exit_code == 0, result.output
    frames = json.loads((out / "results.json").read_text())["frames"]
    assert len(frames) == len(list((out / "masks").glob("*.png"))) == 8
    tracked = [f for f in frames if f["directions"] != ["none"]]
    assert [f["index"] for f in tracked] == list(range(frame, 8))
    assert [f["index"] for f in tracked if f["keyframe"]] == list(range(frame, 8, 3))
    assert all("keyframe" not in f for f in frames if f["directions"] == ["none"])


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--keyframes", "0"], "--keyframes must be 1, a larger interval N or auto"),
        (["--keyframes", "often"], "--keyframes must be 1, a larger interval N or auto"),
        (["--set", "keyframes.interval=0"], "keyframes.interval must be in"),
        (["--keyframes", "2", "--batch-frames", "2"], "use --batch-frames 1"),
        (["--keyframes", "2", "--point", "10,10@3"], "backward passes track every frame"),
    ],
)
def test_bad_keyframe_uses_are_one_line(tmp_path, fake_model, extra, message):
    video, mask, _ = make_input(tmp_path, n_frames=6)
    out = tmp_path / "out"
    result = run(str(video), "--mask", str(mask), "--out", str(out), *extra)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    assert not out.exists()


def test_batch_and_davis_take_the_option():
    for command in ("batch", "davis"):
        result = CliRunner().invoke(cli, [command, "--help"])
        assert "--keyframes" in result.output
