"""Hostile or careless input on the command line: each is one ``error:`` line on stderr and
exit code 2, with nothing written (or, for Ctrl-C and SIGTERM, exit code 130 and a line saying
to run the same command again)."""

from __future__ import annotations

import json
import os
import signal

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import save_file

from persam_video.cli import cli
from persam_video.config import MAX_KEYFRAME_GAP, PerSAMConfig
from persam_video.io import VideoDecodeError, open_source, probe, write_label_png
from persam_video.runtime import HUGE_PAGES_ENV, MAX_THREADS, THREADS_ENV
from tests.video_factory import make_video, synthetic_labels

SIZE = (48, 64)
HUGE = "1" + "0" * 400  # a 401-digit integer
#: The exit code of bad input, and of an interrupted command.
BAD_INPUT, INTERRUPTED = 2, 130


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env)


def assert_one_error_line(result, *expected: str) -> str:
    """The result is exit code 2 with one ``error:`` line (no traceback) holding ``expected``."""
    assert result.exit_code == BAD_INPUT, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def clip(tmp_path, n_frames: int = 3, name: str = "clip.mp4"):
    video = tmp_path / name
    make_video(video, n_frames=n_frames, size_hw=SIZE)
    mask = tmp_path / "m.png"
    write_label_png(mask, synthetic_labels(0, SIZE))
    return video, mask


def track(tmp_path, *args: str, env: dict[str, str] | None = None):
    video, mask = clip(tmp_path)
    out = tmp_path / "out"
    result = invoke(
        "track", str(video), "--mask", str(mask), "--out", str(out), "-q", *args, env=env
    )
    return result, out


# --------------------------------------------------------------------------- items 1-3
def test_a_401_digit_integer_in_set_is_one_line(tmp_path, fake_model):
    result, out = track(tmp_path, "--set", f"track.affinity_radius={HUGE}")
    line = assert_one_error_line(result, "track.affinity_radius must be in [0, 64]")
    assert len(line) < 200 and not out.exists()
    shown = invoke("config", "show", "--set", f"track.momentum={HUGE}")
    assert_one_error_line(shown, "track.momentum must be a finite number")


@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_deeply_nested_config_and_target_files_are_one_line(tmp_path, fake_model, depth):
    config = tmp_path / "deep.yaml"
    config.write_text("track: " + "[" * depth + "]" * depth + "\n")
    result, out = track(tmp_path, "--config", str(config))
    assert_one_error_line(result, str(config), "nested deeper than")
    assert not out.exists()
    target = tmp_path / "deep.target"
    metadata = {
        "format": "persam-video target",
        "format_version": "1",
        "persam_video": "0.1",
        "model": json.dumps({"model": "demo"}),
        "shots": "1",
        "config": "[" * depth + "]" * depth,
    }
    save_file({"embedding": torch.ones(32)}, str(target), metadata=metadata)
    video, _ = clip(tmp_path)
    result = invoke("track", str(video), "--target", str(target), "--out", str(out), "-q")
    assert_one_error_line(result, str(target), "invalid metadata")
    assert not out.exists()


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("presence.min_score=5", "presence.min_score must be in [0, 1]"),
        ("presence.min_score=-3", "presence.min_score must be in [0, 1]"),
        ("track.affinity_radius=100000", "track.affinity_radius must be in [0, 64]"),
    ],
)
def test_config_values_out_of_range_are_refused_before_the_run(
    tmp_path, fake_model, setting, expected
):
    result, out = track(tmp_path, "--set", setting)
    assert_one_error_line(result, expected)
    assert not out.exists()


# --------------------------------------------------------------------------- items 4-6
def test_too_many_threads_are_refused_on_the_command_line_and_in_the_environment(
    tmp_path, fake_model
):
    result, out = track(tmp_path, "--threads", "100000")
    assert_one_error_line(result, f"at most {MAX_THREADS} threads")
    assert not out.exists()
    result, out = track(tmp_path, env={THREADS_ENV: "100000"})
    assert_one_error_line(result, f"${THREADS_ENV}", f"at most {MAX_THREADS} threads")
    assert not out.exists()


@pytest.mark.parametrize("fps", ["1/0", "0/0"])
def test_a_zero_denominator_in_fps_is_one_line(tmp_path, fake_model, fps):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        Image.fromarray(np.zeros((*SIZE, 3), np.uint8)).save(frames / f"{i}.png")
    mask = tmp_path / "m.png"
    write_label_png(mask, synthetic_labels(0, SIZE))
    out = tmp_path / "out"
    result = invoke("track", str(frames), "--mask", str(mask), "--out", str(out), "--fps", fps)
    assert_one_error_line(result, f"fps={fps!r}")
    assert not out.exists()


def test_keyframes_have_an_upper_bound(tmp_path, fake_model):
    for value in (str(MAX_KEYFRAME_GAP + 1), HUGE):
        result, out = track(tmp_path, "--keyframes", value)
        assert_one_error_line(result, "--keyframes must be", f"at most {MAX_KEYFRAME_GAP}")
        assert not out.exists()
    result, out = track(tmp_path, "--set", f"keyframes.interval={MAX_KEYFRAME_GAP + 1}")
    assert_one_error_line(result, f"keyframes.interval must be in [1, {MAX_KEYFRAME_GAP}]")
    help_text = invoke("track", "--help").output
    assert f"up to {MAX_KEYFRAME_GAP}" in help_text and f"1 to {MAX_THREADS}" in help_text


# --------------------------------------------------------------------------- item 7
def _personalize(tmp_path) -> tuple:
    image = tmp_path / "ref.png"
    Image.fromarray((np.random.default_rng(0).random((*SIZE, 3)) * 255).astype(np.uint8)).save(
        image
    )
    mask = tmp_path / "ref_mask.png"
    labels = np.zeros(SIZE, np.uint8)
    labels[10:30, 12:40] = 1
    write_label_png(mask, labels)
    target = tmp_path / "made.target"
    made = invoke("personalize", str(image), "--mask", str(mask), "-o", str(target), "-q")
    assert made.exit_code == 0, made.output
    return image, target


def test_damaged_target_values_are_one_line_and_genuine_targets_work(tmp_path, fake_model):
    from persam_video.apps.target_file import load_target

    image, target = _personalize(tmp_path)
    genuine = load_target(target)
    segmented = invoke(
        "segment", str(image), "--target", str(target), "--out", str(tmp_path / "ok"), "-q"
    )
    assert segmented.exit_code == 0, segmented.output
    embedding = genuine.target.embedding
    metadata = {
        "format": "persam-video target",
        "format_version": "1",
        "persam_video": "0.1",
        "model": json.dumps(genuine.model),
        "shots": "1",
        "config": json.dumps(PerSAMConfig().to_dict()),
    }
    bad = {
        "float16": (embedding.half(), "embedding is float16, not float32"),
        "int64": (embedding.long(), "embedding is int64, not float32"),
        "zeros": (torch.zeros_like(embedding), "all zeros"),
        "nan": (embedding.clone().fill_(float("nan")), "NaN or infinite"),
        "huge": (embedding * 1e30, "values of magnitude above"),
    }
    for name, (tensor, expected) in bad.items():
        path = tmp_path / f"{name}.target"
        save_file({"embedding": tensor}, str(path), metadata=metadata)
        out = tmp_path / f"out-{name}"
        result = invoke("segment", str(image), "--target", str(path), "--out", str(out), "-q")
        assert_one_error_line(result, str(path), expected)
        assert not out.exists()


# --------------------------------------------------------------------------- item 8
def test_a_config_that_is_not_a_mapping_of_settings_is_never_echoed(tmp_path, fake_model):
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$s3cr3tHASH:19000:0:99999:7:::\nhunter2:x:1:1::/:/bin/sh\n")
    for args in (("config", "show"), ("track",)):
        if args == ("track",):
            result, _ = track(tmp_path, "--config", str(secret))
        else:
            result = invoke(*args, "--config", str(secret))
        line = assert_one_error_line(result, f"{secret} is not a YAML mapping of settings")
        assert "s3cr3t" not in result.output and "hunter2" not in result.output, line


# --------------------------------------------------------------------------- item 9
def test_a_file_named_like_an_ffmpeg_protocol_is_read_as_itself(tmp_path, fake_model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_video(tmp_path / "x.mp4", n_frames=3, size_hw=SIZE)
    make_video(tmp_path / "y.mp4", n_frames=4, size_hw=SIZE)
    name = "concat:x.mp4|y.mp4"
    make_video(tmp_path / "own.mp4", n_frames=9, size_hw=SIZE)
    (tmp_path / "own.mp4").rename(tmp_path / name)  # FFmpeg cannot write to that name itself
    assert probe(name).num_frames == 9
    with open_source(name) as frames:
        assert len(list(frames)) == 9
    mask = tmp_path / "m.png"
    write_label_png(mask, synthetic_labels(0, SIZE))
    result = invoke(
        "track", name, "--mask", "m.png", "--out", "out", "-q", "--no-overlay", "--no-report"
    )
    assert result.exit_code == 0, result.output
    assert len(json.loads((tmp_path / "out" / "results.json").read_text())["frames"]) == 9


# --------------------------------------------------------------------------- item 10
def _zero_packets(path, packet_indices: list[int], out):
    """A copy of ``path`` whose given video packets (decode order) are zeroed out."""
    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    data = bytearray(path.read_bytes())
    for index in packet_indices:
        pos, size = packets[index]
        data[pos : pos + size] = bytes(size)
    out.write_bytes(bytes(data))
    return out


def test_frames_decoded_before_damage_are_kept_when_decord_fails(tmp_path, fake_model):
    video, mask = clip(tmp_path, n_frames=30)
    # The packets right after the first keyframe: the decoder still holds frame 0 (B-frame
    # reordering) when they fail, and decord fails at frame 0.
    damaged = _zero_packets(video, [1, 2], tmp_path / "damaged.mp4")
    with open_source(video) as frames:
        first = next(frames)
    kept = []
    with pytest.raises(VideoDecodeError) as info:
        for frame in open_source(damaged):
            kept.append(frame)
    assert [f.index for f in kept] == list(range(len(kept))) and len(kept) >= 1
    assert info.value.frame_index == len(kept)
    np.testing.assert_array_equal(kept[0].rgb, first.rgb)
    assert kept[0].time == first.time
    out = tmp_path / "out"
    result = invoke("track", str(damaged), "--mask", str(mask), "--out", str(out), "-q")
    assert result.exit_code == BAD_INPUT and "partial results in" in result.output
    (record,) = out.glob("results*.json")  # results.json, or results.partial.json
    doc = json.loads(record.read_text())
    assert doc["status"] == "partial" and len(doc["frames"]) == len(kept)


# --------------------------------------------------------------------------- item 11
def test_ctrl_c_in_davis_exits_130_with_the_resume_line(tmp_path, fake_model, monkeypatch):
    from persam_video.synthetic.export import write_davis
    from persam_video.video.tracker import VideoTracker

    root = tmp_path / "davis"
    write_davis(root, [1000])
    original = VideoTracker.step_features

    def interrupt_at_2(self, state, feats, frame, *, index, **kwargs):
        if index == 2:
            raise KeyboardInterrupt
        return original(self, state, feats, frame, index=index, **kwargs)

    monkeypatch.setattr(VideoTracker, "step_features", interrupt_at_2)
    result = invoke("davis", "--davis-root", str(root), "--out", str(tmp_path / "res"), "-q")
    assert result.exit_code == INTERRUPTED, result.output
    assert "interrupted" in result.output and "run the same command again" in result.output
    assert "Aborted!" not in result.output


def test_sigterm_in_segment_exits_130_with_the_resume_line(
    tmp_path, fake_model, monkeypatch, capsys
):
    from persam_video.apps import images
    from persam_video.cli import main

    image, target = _personalize(tmp_path)
    original = images.read_image

    def terminated_while_reading(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # main()'s handler raises it as Ctrl-C
        return original(*args, **kwargs)

    monkeypatch.setattr(images, "read_image", terminated_while_reading)
    monkeypatch.setenv(HUGE_PAGES_ENV, os.environ.get(HUGE_PAGES_ENV, "1"))
    capsys.readouterr()
    previous = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "found"
    try:
        with pytest.raises(SystemExit) as info:
            main(["segment", str(image), "--target", str(target), "--out", str(out), "-q"])
    finally:
        signal.signal(signal.SIGTERM, previous)
    err = capsys.readouterr().err
    assert info.value.code == INTERRUPTED, err
    assert "interrupted" in err and "run the same command again" in err
    assert "Aborted!" not in err and not (out / "results.json").exists()
