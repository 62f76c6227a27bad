"""``persam-video track`` end to end on small generated videos, and every bad input."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from persam_video.cli import cli
from persam_video.io import probe, read_mask, write_label_png
from tests.helpers import leftovers
from tests.video_factory import make_video, synthetic_frame, synthetic_labels


def run(*args: str):
    return CliRunner().invoke(cli, ["track", *args, "-q"])


def make_input(
    tmp_path: Path,
    *,
    n_frames=12,
    size_hw=(72, 96),
    fps=Fraction(25),
    audio=False,
    objects=2,
    suffix=".mp4",
):
    video = tmp_path / f"in{suffix}"
    make_video(video, n_frames=n_frames, size_hw=size_hw, fps=fps, audio=audio)
    labels = synthetic_labels(0, size_hw)
    if objects == 1:
        labels[labels == 2] = 0
    elif objects == 3:
        labels[-6:, :8] = 3
    mask = tmp_path / "first.png"
    write_label_png(mask, labels)
    return video, mask, labels


def audio_packets(path: Path) -> int:
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return 0
        return sum(1 for p in container.demux(container.streams.audio[0]) if p.size)


@pytest.mark.parametrize(
    "size_hw,fps,audio,objects",
    [
        ((72, 96), Fraction(25), False, 1),
        ((61, 87), Fraction(30000, 1001), True, 2),
        ((90, 64), Fraction(24), True, 3),
    ],
)
def test_track_writes_every_output(tmp_path, fake_model, size_hw, fps, audio, objects):
    video, mask, first = make_input(
        tmp_path, size_hw=size_hw, fps=fps, audio=audio, objects=objects
    )
    out = tmp_path / "out"
    result = run(
        str(video), "--mask", str(mask), "--out", str(out), "--masked-video", "blur", "--points"
    )
    assert result.exit_code == 0, result.output
    assert "tracked" in result.output and str(out) in result.output
    masks = sorted((out / "masks").iterdir())
    assert [p.name for p in masks] == [f"{i:05d}.png" for i in range(12)]
    for path in masks:
        image = Image.open(path)
        assert image.mode == "P" and image.size == (size_hw[1], size_hw[0])
        assert set(np.unique(read_mask(path))) <= set(np.unique(first))
    np.testing.assert_array_equal(read_mask(masks[0]), first)  # frame 0 is the annotation
    for name in ("overlay.mp4", "masked.mp4"):
        info = probe(out / name)
        assert info.num_frames == 12 and info.fps == fps
        assert info.has_audio == audio
        if audio:
            assert abs(audio_packets(out / name) - audio_packets(video)) <= 2
    doc = json.loads((out / "results.json").read_text())
    assert doc["status"] == "complete" and doc["error"] is None
    assert doc["object_ids"] == sorted(int(i) for i in np.unique(first) if i)
    assert doc["input"]["fps"] == str(fps) and doc["input"]["size_hw"] == list(size_hw)
    assert doc["outputs"] == {
        "masks": "masks",
        "overlay": "overlay.mp4",
        "masked": "masked.mp4",
        "report": "report.html",
    }
    assert set(doc["run"]) >= {"model", "config", "versions", "device"}
    assert doc["run"]["config"]["track"]["momentum"] == 0.9
    assert doc["timings"]["frames"] == 12
    assert len(doc["frames"]) == 12
    frame = doc["frames"][3]
    assert frame["index"] == 3 and frame["time"] == pytest.approx(3 / float(fps), abs=1e-3)
    assert set(frame["objects"]) == {str(i) for i in doc["object_ids"]}
    assert set(frame["objects"]["1"]) >= {"present", "score", "area", "bbox"}
    assert not leftovers(out)  # no temporary files


def test_track_folder_of_frames_and_alpha(tmp_path, fake_model):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(10):
        Image.fromarray(synthetic_frame(i, (64, 80))).save(frames / f"{i}.jpg")
    mask = tmp_path / "m.png"
    write_label_png(mask, synthetic_labels(0, (64, 80)))
    out = tmp_path / "out"
    result = run(
        str(frames),
        "--mask",
        str(mask),
        "--out",
        str(out),
        "--masked-video",
        "alpha",
        "--no-overlay",
        "--fps",
        "30000/1001",
    )
    assert result.exit_code == 0, result.output
    assert not (out / "overlay.mp4").exists()
    info = probe(out / "masked.mov")
    assert info.num_frames == 10 and info.fps == Fraction(30000, 1001) and info.codec == "png"
    with av.open(str(out / "masked.mov")) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgba")
    labels = read_mask(out / "masks" / "00000.png")
    np.testing.assert_array_equal(first[..., 3] > 0, labels > 0)


def test_mask_formats_on_the_command_line(tmp_path, fake_model):
    video, _, labels = make_input(tmp_path, n_frames=3)
    gray = tmp_path / "gray.png"
    Image.fromarray(((labels == 1) * 255).astype(np.uint8)).save(gray)
    colours = np.zeros((*labels.shape, 3), np.uint8)
    colours[labels == 1] = (10, 200, 30)
    colours[labels == 2] = (250, 250, 0)
    rgb = tmp_path / "rgb.png"
    Image.fromarray(colours).save(rgb)
    for mask, ids in ((gray, [1]), (rgb, [1, 2])):
        out = tmp_path / f"out-{mask.stem}"
        assert run(str(video), "--mask", str(mask), "--out", str(out)).exit_code == 0
        assert json.loads((out / "results.json").read_text())["object_ids"] == ids


def test_resize_mask(tmp_path, fake_model):
    video, _, labels = make_input(tmp_path, n_frames=3)
    small = tmp_path / "small.png"
    write_label_png(small, labels[::2, ::2])
    out = tmp_path / "out"
    refused = run(str(video), "--mask", str(small), "--out", str(out))
    assert refused.exit_code == 2 and "--resize-mask" in refused.output
    assert not out.exists()
    ok = run(str(video), "--mask", str(small), "--out", str(out), "--resize-mask")
    assert ok.exit_code == 0, ok.output
    assert read_mask(out / "masks" / "00000.png").shape == labels.shape


def _bad_inputs(tmp_path: Path):
    video, mask, labels = make_input(tmp_path, n_frames=3)
    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    empty_mask = tmp_path / "empty.png"
    write_label_png(empty_mask, np.zeros_like(labels))
    many = np.zeros((*labels.shape, 3), np.uint8)
    many.reshape(-1, 3)[:300] = [(i % 256, i // 256 + 1, 7) for i in range(300)]
    many_mask = tmp_path / "many.png"
    Image.fromarray(many).save(many_mask)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    out = str(tmp_path / "out")
    return [
        ([str(tmp_path / "missing.mp4"), "--mask", str(mask), "--out", out], "missing.mp4"),
        ([str(text), "--mask", str(mask), "--out", out], "notes.txt"),
        ([str(empty_dir), "--mask", str(mask), "--out", out], "empty"),
        ([str(video), "--mask", str(tmp_path / "nope.png"), "--out", out], "nope.png"),
        ([str(video), "--mask", str(empty_mask), "--out", out], "empty"),
        ([str(video), "--mask", str(many_mask), "--out", out], "254"),
        ([str(video), "--mask", str(mask), "--out", out, "--model", "vit_q"], "unknown model"),
        ([str(video), "--mask", str(mask), "--out", out, "--set", "track.nope=1"], "valid keys"),
        ([str(video), "--mask", str(mask), "--out", out, "--config", "nope"], "neither a preset"),
        ([str(video), "--mask", str(mask), "--out", str(a_file)], "not a folder"),
        ([str(video), "--mask", str(mask), "--out", str(a_file / "sub")], "not a folder"),
    ]


def test_every_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, fake_model):
    for args, needle in _bad_inputs(tmp_path):
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output.startswith("error: "), (args, result.output)
        assert result.output.count("\n") == 1, (args, result.output)
        assert needle in result.output, (args, result.output)
        assert "Traceback" not in result.output
        assert not (tmp_path / "out").exists(), args


def test_decode_failure_keeps_partial_results(tmp_path, fake_model):
    video = tmp_path / "cut.mkv"
    make_video(video, n_frames=100, size_hw=(48, 64))
    data = video.read_bytes()
    video.write_bytes(data[: int(len(data) * 0.6)])
    mask = tmp_path / "m.png"
    write_label_png(mask, synthetic_labels(0, (48, 64)))
    out = tmp_path / "out"
    result = run(str(video), "--mask", str(mask), "--out", str(out))
    assert result.exit_code == 2
    assert "frame" in result.output and "partial results in" in result.output
    doc = json.loads((out / "results.partial.json").read_text())
    assert doc["status"] == "partial" and "frame" in doc["error"]
    done = len(doc["frames"])
    assert 30 < done < 80
    assert not (out / "masks").exists() and not (out / "overlay.mp4").exists()
    assert len(list((out / "masks.partial").iterdir())) == done
    assert probe(out / "overlay.partial.mp4").num_frames == done


def test_ctrl_c_stops_cleanly(tmp_path, fake_model, monkeypatch):
    from persam_video.video.tracker import VideoTracker

    original = VideoTracker.step_features

    def interrupt_at_5(self, state, feats, frame, *, index, **kwargs):
        if index == 5:
            raise KeyboardInterrupt
        return original(self, state, feats, frame, index=index, **kwargs)

    monkeypatch.setattr(VideoTracker, "step_features", interrupt_at_5)
    video, mask, _ = make_input(tmp_path, n_frames=12)
    out = tmp_path / "out"
    result = run(str(video), "--mask", str(mask), "--out", str(out))
    assert result.exit_code == 130
    assert "interrupted" in result.output and "partial results in" in result.output
    doc = json.loads((out / "results.partial.json").read_text())
    assert doc["status"] == "interrupted" and len(doc["frames"]) == 5
    assert len(list((out / "masks.partial").iterdir())) == 5
    assert not leftovers(out)


def test_variable_frame_rate_keeps_timestamps(tmp_path, fake_model):
    from tests.video_factory import frame_times

    video = tmp_path / "vfr.mkv"
    make_video(video, n_frames=10, size_hw=(48, 64), vfr=True)
    mask = tmp_path / "m.png"
    write_label_png(mask, synthetic_labels(0, (48, 64)))
    out = tmp_path / "out"
    assert run(str(video), "--mask", str(mask), "--out", str(out)).exit_code == 0
    want = [float(t) for t in frame_times(10, Fraction(25), vfr=True)]
    doc = json.loads((out / "results.json").read_text())
    assert [f["time"] for f in doc["frames"]] == pytest.approx(want, abs=1e-3)
    with av.open(str(out / "overlay.mp4")) as container:
        stream = container.streams.video[0]
        got = sorted(float(f.pts * stream.time_base) for f in container.decode(stream))
    assert got == pytest.approx(want, abs=1e-3)


def test_precision_choices_agree_with_the_encoder_and_the_readme():
    from persam_video.cli.common import PRECISIONS as CLI_PRECISIONS
    from persam_video.persam.encoder import PRECISIONS
    from tests.helpers import REPO_ROOT

    assert CLI_PRECISIONS == PRECISIONS
    for command in ("track", "davis"):
        help_text = CliRunner().invoke(cli, [command, "--help"]).output
        assert f"[{'|'.join(PRECISIONS)}]" in " ".join(help_text.split()), command
    assert f"--precision {'|'.join(PRECISIONS)}" in (REPO_ROOT / "README.md").read_text()


def test_int8_precision_is_recorded(tmp_path, fake_model):
    video, mask, _ = make_input(tmp_path, n_frames=3)
    out = tmp_path / "out"
    result = run(
        str(video),
        "--mask",
        str(mask),
        "--out",
        str(out),
        "--precision",
        "int8",
        "--device",
        "cpu",
        "--no-overlay",
    )
    assert result.exit_code == 0, result.output
    encoder = json.loads((out / "results.json").read_text())["run"]["encoder"]
    assert encoder == {
        "attention": "fast",
        "precision": "int8",
        "batch_frames": 1,
        "compile": False,
    }
    default = tmp_path / "default"
    result = run(str(video), "--mask", str(mask), "--out", str(default), "--no-overlay")
    assert result.exit_code == 0, result.output
    auto = json.loads((default / "results.json").read_text())["run"]["encoder"]
    assert auto["precision"] == "float32"  # --precision auto on a CPU


def test_int8_on_a_gpu_is_one_line_exit_2_before_the_model_loads(tmp_path, monkeypatch):
    import persam_video.cli.common as cli_common
    from persam_video.model import registry

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(cli_common, "load_model", no_model)
    monkeypatch.setattr(registry, "resolve_device", lambda device: torch.device("cuda"))
    video, mask, _ = make_input(tmp_path, n_frames=3)
    result = run(
        str(video), "--mask", str(mask), "--out", str(tmp_path / "out"), "--precision", "int8"
    )
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("error: ")
    assert "--precision int8 runs on CPUs only" in result.output
    assert not (tmp_path / "out").exists()
