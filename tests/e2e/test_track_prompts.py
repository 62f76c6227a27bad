"""``persam-video track`` from clicks, boxes and masks on any frame (demo model), and every bad
prompt: one line, exit 2, nothing written."""

from __future__ import annotations

import itertools
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from persam_video.cli import cli
from persam_video.io import probe, write_label_png
from tests.video_factory import frame_times, make_video, synthetic_labels

SIZE = (72, 96)
N_FRAMES = 16
MIDDLE = 8
FPS = Fraction(30000, 1001)


def run(*args: str):
    return CliRunner().invoke(cli, ["track", *args, "-q"])


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "in.mp4"
    make_video(path, n_frames=N_FRAMES, size_hw=SIZE, fps=FPS, audio=True, vfr=True)
    return path


def click_of(obj_id: int, frame: int) -> str:
    ys, xs = np.nonzero(synthetic_labels(frame, SIZE) == obj_id)
    return f"{xs.mean():.1f},{ys.mean():.1f}"


def box_of(obj_id: int, frame: int) -> str:
    ys, xs = np.nonzero(synthetic_labels(frame, SIZE) == obj_id)
    return f"{xs.min()},{ys.min()},{xs.max() + 1},{ys.max() + 1}"


def stream_times(path: Path) -> list[Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None)
        return [Fraction(p - pts[0]) * stream.time_base for p in pts]


def audio_packets(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for p in container.demux(container.streams.audio[0]) if p.size)


def test_click_and_box_on_a_middle_frame_both_ways(tmp_path, video):
    out = tmp_path / "out"
    result = run(
        str(video),
        "--out",
        str(out),
        "--model",
        "demo",
        "--point",
        f"{click_of(1, MIDDLE)}@{MIDDLE}",
        "--box",
        f"2={box_of(2, MIDDLE)}@{MIDDLE}",
        "--save-prompt-masks",
    )
    assert result.exit_code == 0, result.output
    assert "tracked 2 objects through 16 frames (both)" in result.output
    masks = sorted((out / "masks").iterdir())
    assert [m.name for m in masks] == [f"{i:05d}.png" for i in range(N_FRAMES)]
    for index, path in enumerate(masks):
        labels = np.asarray(Image.open(path))
        truth = synthetic_labels(index, SIZE)
        for obj_id in (1, 2):
            inter = ((labels == obj_id) & (truth == obj_id)).sum()
            assert inter / ((labels == obj_id) | (truth == obj_id)).sum() > 0.5, (index, obj_id)
    prompt_png = np.asarray(Image.open(out / "prompt_masks" / f"{MIDDLE:05d}.png"))
    assert set(np.unique(prompt_png)) == {0, 1, 2}
    doc = json.loads((out / "results.json").read_text())
    assert doc["status"] == "complete" and doc["direction"] == "both"
    assert doc["annotated_frames"] == [MIDDLE]
    assert [(p["object"], p["kind"], p["frame"]) for p in doc["prompts"]] == [
        (1, "points", MIDDLE),
        (2, "box", MIDDLE),
    ]
    directions = [f["directions"] for f in doc["frames"]]
    assert directions == [["backward"]] * MIDDLE + [["forward"]] * (N_FRAMES - MIDDLE)
    assert doc["frames"][MIDDLE]["objects"]["2"]["annotated"]
    # The overlay is in frame order, with the input's timestamps and audio, and the frame rate
    # the first-frame path gives it (for this variable-frame-rate input, the average).
    overlay = out / "overlay.mp4"
    mask = tmp_path / "first.png"
    write_label_png(mask, synthetic_labels(0, SIZE))
    plain = run(
        str(video), "--mask", str(mask), "--out", str(tmp_path / "plain"), "--model", "demo"
    )
    assert plain.exit_code == 0
    assert probe(overlay).fps == probe(tmp_path / "plain" / "overlay.mp4").fps
    assert stream_times(overlay) == stream_times(video) == frame_times(N_FRAMES, FPS, vfr=True)
    assert audio_packets(overlay) > 0
    with av.open(str(overlay)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == N_FRAMES
    # Frame order: object 1 moves right 3 px per frame; its colour's centroid follows.
    red = [np.nonzero((f[..., 0] > 150) & (f[..., 1] < 90))[1].mean() for f in decoded]
    assert all(b > a for a, b in itertools.pairwise(red))
    assert [f["time"] for f in doc["frames"]] == [
        float(t) for t in frame_times(N_FRAMES, FPS, True)
    ]


def test_masks_on_two_frames_and_a_later_object(tmp_path, video):
    first = tmp_path / "a.png"
    one = synthetic_labels(2, SIZE)
    one[one == 2] = 0
    write_label_png(first, one)
    later = tmp_path / "b.png"
    two = synthetic_labels(12, SIZE)
    two[two == 1] = 0
    write_label_png(later, two)
    out = tmp_path / "out"
    result = run(
        str(video),
        "--out",
        str(out),
        "--model",
        "demo",
        "--mask",
        f"{first}@2",
        "--mask",
        f"{later}@12",
        "--direction",
        "forward",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "results.json").read_text())
    frames = doc["frames"]
    assert [f["directions"] for f in frames[:2]] == [["none"], ["none"]]
    assert not any(np.asarray(Image.open(out / "masks" / f"{i:05d}.png")).any() for i in (0, 1))
    assert all(not f["objects"]["2"]["present"] for f in frames[:12])
    assert frames[12]["objects"]["2"]["annotated"] and frames[13]["objects"]["2"]["present"]
    assert [p["source"] for p in doc["prompts"]] == [str(first), str(later)]


def test_backward_with_annotations_only_on_frame_0_says_so(tmp_path, video):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        [
            "track",
            str(video),
            "--out",
            str(out),
            "--model",
            "demo",
            "--point",
            click_of(1, 0),
            "--direction",
            "backward",
            "-q",
            "--no-overlay",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "nothing to track backward" in result.output


def test_a_first_frame_mask_at_0_is_the_plain_path(tmp_path, video):
    mask = tmp_path / "m.png"
    write_label_png(mask, synthetic_labels(0, SIZE))
    plain = run(str(video), "--mask", str(mask), "--out", str(tmp_path / "a"), "--model", "demo")
    at0 = run(str(video), "--mask", f"{mask}@0", "--out", str(tmp_path / "b"), "--model", "demo")
    assert plain.exit_code == at0.exit_code == 0
    assert "direction" not in json.loads((tmp_path / "a" / "results.json").read_text())
    for i in range(N_FRAMES):
        name = f"masks/{i:05d}.png"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--point", "10,10@16"], "frame 16 is beyond the video, which has 16 frames"),
        (["--point", "10,10@-1"], "frame -1 is negative"),
        (["--point", "96,10"], "outside the 96x72 frame"),
        (["--neg-point", "1=10,-1@3"], "outside the 96x72 frame"),
        (["--box", "0,0,97,10"], "outside the 96x72 frame"),
        (["--box", "20,5,20,30"], "x1 > x0 and y1 > y0"),
        (["--box", "20,30,40,30@2"], "x1 > x0 and y1 > y0"),
        (["--point", "0=10,10"], "object id 0 is not in 1..254"),
        (["--point", "255=10,10"], "object id 255 is not in 1..254"),
        (["--point", "300=10,10"], "object id 300 is not in 1..254"),
        (["--point", "10;10"], "expected [ID=]X,Y[@FRAME]"),
        (["--point", "10,10@x"], "expected [ID=]X,Y[@FRAME]"),
        (["--box", "1,2,3"], "expected [ID=]X0,Y0,X1,Y1[@FRAME]"),
        (["--mask", "@3"], "expected PATH[@FRAME]"),
        (["--mask", "MASK@2", "--mask", "MASK@2"], "two masks for frame 2"),
        (["--neg-point", "10,10"], "needs a positive click or a box"),
        (["--point", "10,10", "--start", "2"], "--start and --max-frames"),
    ],
)
def test_bad_prompts(tmp_path, video, args, message):
    mask = tmp_path / "m.png"
    write_label_png(mask, synthetic_labels(0, SIZE))
    args = [a.replace("MASK", str(mask)) for a in args]
    out = tmp_path / "out"
    result = run(str(video), "--out", str(out), "--model", "demo", *args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not out.exists()


def test_a_prompt_sam_makes_nothing_of_is_one_line(tmp_path, video, monkeypatch):
    import persam_video.video.session as session_module
    from persam_video.persam.prompts import PromptMask

    empty = PromptMask(np.zeros(SIZE, bool), 0.0, "multimask")
    monkeypatch.setattr(session_module, "prompt_mask", lambda *a, **k: empty)
    out = tmp_path / "out"
    result = run(str(video), "--out", str(out), "--model", "demo", "--point", "3=10,10@4")
    assert result.exit_code == 2
    assert (
        "--point 3=10,10@4: SAM turns the points prompt of object 3 on frame 4 into an "
        "empty mask" in result.output
    )
    assert not out.exists()


def test_targets_combine_with_prompts_for_other_ids(tmp_path, video):
    image = tmp_path / "ref.png"
    Image.fromarray(av.open(str(video)).decode(video=0).__next__().to_ndarray(format="rgb24")).save(
        image
    )
    mask = tmp_path / "m.png"
    one = synthetic_labels(0, SIZE)
    one[one == 2] = 0
    write_label_png(mask, one)
    target = tmp_path / "red.target"
    made = CliRunner().invoke(
        cli,
        [
            "personalize",
            str(image),
            "--mask",
            str(mask),
            "--object",
            "1",
            "--out",
            str(target),
            "--model",
            "demo",
            "-q",
        ],
    )
    assert made.exit_code == 0, made.output
    out = tmp_path / "out"
    both = run(
        str(video),
        "--out",
        str(out),
        "--target",
        str(target),
        "--box",
        f"2={box_of(2, MIDDLE)}@{MIDDLE}",
        "--no-overlay",
    )
    assert both.exit_code == 0, both.output
    doc = json.loads((out / "results.json").read_text())
    assert doc["object_ids"] == [1, 2] and doc["target_ids"] == [1]
    assert doc["frames"][0]["objects"]["1"]["direction"] == "forward"
    assert doc["frames"][0]["objects"]["2"]["direction"] == "backward"
    clash = run(
        str(video),
        "--out",
        str(tmp_path / "clash"),
        "--target",
        str(target),
        "--point",
        f"{click_of(1, 3)}@3",
    )
    assert clash.exit_code == 2 and "object id 1 is --target number 1" in clash.output
    assert not (tmp_path / "clash").exists()
