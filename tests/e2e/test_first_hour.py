"""What a newcomer meets in the first hour, end to end: threads, fine-tuning feedback, mask
colours, batch checks, the model of a target, rough edges, frame ranges, frame export and the
config listing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from persam_video.apps.target_file import save_target
from persam_video.atomic import file_mode
from persam_video.cli import cli
from persam_video.config import PerSAMConfig, load_config
from persam_video.io import open_source, probe, read_mask, write_label_png
from persam_video.model import registry as models
from persam_video.model.checkpoints import WeightsError
from persam_video.persam import Target
from tests.video_factory import make_video, synthetic_labels

SIZE = (48, 64)


@pytest.fixture
def clip(tmp_path):
    video = tmp_path / "clip.mp4"
    make_video(video, n_frames=8, size_hw=SIZE, audio=True)
    mask = tmp_path / "first.png"
    write_label_png(mask, synthetic_labels(0, SIZE))
    return video, mask


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_threads_option_is_applied_and_recorded(tmp_path, fake_model, clip):
    video, mask = clip
    before = torch.get_num_threads()
    try:
        result = invoke(
            "track",
            str(video),
            "--mask",
            str(mask),
            "--out",
            str(tmp_path / "o"),
            "-q",
            "--threads",
            "1",
        )
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 1
        doc = json.loads((tmp_path / "o" / "results.json").read_text())
        assert doc["run"]["threads"] == 1
    finally:
        torch.set_num_threads(before)
    bad = invoke(
        "track", str(video), "--mask", str(mask), "--out", str(tmp_path / "p"), "--threads", "0"
    )
    assert bad.exit_code == 2 and "threads must be a positive integer or auto" in bad.output
    assert not (tmp_path / "p").exists()


def test_finetuning_reports_its_weights_and_is_not_charged_to_frames_per_second(
    tmp_path, fake_model, clip
):
    video, mask = clip
    out = tmp_path / "o"
    result = invoke(
        "track",
        str(video),
        "--mask",
        str(mask),
        "--out",
        str(out),
        "-q",
        "--finetune",
        "--set",
        "finetune.steps=40",
    )
    assert result.exit_code == 0, result.output
    assert "PerSAM-F object 1: weights" in result.output and "40 steps" in result.output
    doc = json.loads((out / "results.json").read_text())
    info = doc["frames"][0]["objects"]["1"]["finetune"]
    assert info["steps"] == 40 and len(info["weights"]) == 3
    timings = doc["timings"]
    assert timings["finetune_s"] > 0
    tracking = timings["total_s"] - timings["finetune_s"]
    assert timings["frames_per_s"] == pytest.approx(timings["frames"] / tracking, rel=0.01)


def test_segment_refuses_finetune(tmp_path, fake_model):
    target = tmp_path / "t.target"
    save_target(
        target, Target(torch.randn(32)), model={"model": "vit_b"}, config=PerSAMConfig(), shots=1
    )
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(image)
    result = invoke(
        "segment", str(image), "--target", str(target), "--out", str(tmp_path / "s"), "--finetune"
    )
    assert result.exit_code == 2 and "personalize --finetune" in result.output
    assert not (tmp_path / "s").exists()
    assert "--finetune" not in invoke("segment", "--help").output


def test_colour_masks_are_recorded_printed_and_legended(tmp_path, fake_model, clip):
    video, _ = clip
    labels = synthetic_labels(0, SIZE)
    colours = np.zeros((*SIZE, 3), np.uint8)
    colours[labels == 2] = (0, 200, 0)  # this box starts on row 0: scanned first, object 1
    colours[labels == 1] = (200, 0, 0)
    mask = tmp_path / "colours.png"
    Image.fromarray(colours).save(mask)
    out = tmp_path / "o"
    result = invoke("track", str(video), "--mask", str(mask), "--out", str(out), "-q")
    assert result.exit_code == 0, result.output
    assert "mask colours -> object ids: (0, 200, 0) -> 1, (200, 0, 0) -> 2" in result.output
    doc = json.loads((out / "results.json").read_text())
    assert doc["annotation"] == {"kind": "colour", "ids": {"1": "(0, 200, 0)", "2": "(200, 0, 0)"}}
    assert doc["warnings"] == []


def test_a_fragmented_mask_is_warned_about(tmp_path, fake_model, clip):
    video, _ = clip
    labels = synthetic_labels(0, SIZE)
    for k in range(8):
        labels[0, 2 * k] = 10 + k
    mask = tmp_path / "soft.png"
    write_label_png(mask, labels)
    result = CliRunner().invoke(
        cli, ["track", str(video), "--mask", str(mask), "--out", str(tmp_path / "o"), "-q"]
    )
    assert result.exit_code == 0, result.output
    assert "warning: the mask has 10 objects, 8 of them" in result.output
    doc = json.loads((tmp_path / "o" / "results.json").read_text())
    assert len(doc["warnings"]) == 1


def test_batch_checks_masks_before_any_clip_runs(tmp_path, fake_model, clip):
    video, mask = clip
    small = tmp_path / "small.png"
    write_label_png(small, synthetic_labels(0, (24, 32)))
    jpeg = tmp_path / "mask.jpg"
    Image.fromarray((synthetic_labels(0, SIZE) > 0).astype(np.uint8) * 255).save(jpeg)
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        f"input,mask,name\n{video},{mask},ok\n{video},small.png,small\n{video},mask.jpg,jpeg\n"
    )
    out = tmp_path / "runs"
    result = invoke(
        "batch", str(manifest), "--out", str(out), "-q", "--no-overlay", "--model", "demo"
    )
    assert result.exit_code == 2
    assert "m.csv:3: the mask is 32x24 but the frames are 64x48" in result.output
    assert "run the batch with --resize-mask" in result.output
    assert "m.csv:4:" in result.output and "JPEG masks are lossy" in result.output
    assert not out.exists()  # nothing ran, nothing written
    manifest.write_text(f"input,mask,name\n{video},{mask},ok\n{video},small.png,small\n")
    resized = invoke(
        "batch",
        str(manifest),
        "--out",
        str(out),
        "-q",
        "--no-overlay",
        "--resize-mask",
        "--model",
        "demo",
        "--threads",
        "1",
    )
    assert resized.exit_code == 0, resized.output
    assert read_mask(out / "small" / "masks" / "00000.png").shape == SIZE


def test_the_model_defaults_to_the_targets(tmp_path, clip):
    """No --model: the model a target was made with (the bundled demo model here, no
    download); another --model is refused naming the right one."""
    video, mask = clip
    image = tmp_path / "ref.png"
    with open_source(video) as frames:
        Image.fromarray(next(iter(frames)).rgb).save(image)
    target = tmp_path / "obj.target"
    made = invoke(
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
        "--threads",
        "1",
    )
    assert made.exit_code == 0, made.output
    assert target.stat().st_mode & 0o777 == file_mode()  # not 0600 as safetensors writes it
    tracked = invoke(
        "track",
        str(video),
        "--target",
        str(target),
        "--out",
        str(tmp_path / "t"),
        "-q",
        "--threads",
        "1",
    )
    assert tracked.exit_code == 0, tracked.output
    doc = json.loads((tmp_path / "t" / "results.json").read_text())
    assert doc["run"]["model"] == "demo"
    other = invoke(
        "track",
        str(video),
        "--target",
        str(target),
        "--out",
        str(tmp_path / "u"),
        "--model",
        "vit_b",
        "-q",
    )
    assert other.exit_code == 2
    assert "made with model demo, not vit_b; use --model demo" in other.output


def test_the_demo_weights_are_bundled(tmp_path, monkeypatch):
    monkeypatch.setenv("PERSAM_VIDEO_CACHE", str(tmp_path / "cache"))
    assert "demo_sam.safetensors" in invoke("weights", "path", "demo").output
    download = invoke("weights", "download", "demo")
    assert download.exit_code == 0 and "nothing to download" in download.output


def test_a_mask_with_a_missing_target_names_the_target(tmp_path, fake_model, clip):
    video, mask = clip
    both = invoke(
        "track",
        str(video),
        "--mask",
        str(mask),
        "--target",
        "x.target",
        "--out",
        str(tmp_path / "b"),
    )
    # A mask and targets together are prompts plus targets: the target is read first.
    assert both.exit_code == 2 and "target file x.target does not exist" in both.output


def test_fps_is_refused_for_a_video_file_naming_the_option(tmp_path, fake_model, clip):
    video, mask = clip
    fps = invoke(
        "track", str(video), "--mask", str(mask), "--out", str(tmp_path / "f"), "--fps", "30"
    )
    assert fps.exit_code == 2 and "--fps" in fps.output and "fps=" not in fps.output


def test_a_single_object_is_counted_in_the_singular(tmp_path, fake_model, clip):
    video, _ = clip
    one = labels_one_object(tmp_path)
    single = invoke("track", str(video), "--mask", str(one), "--out", str(tmp_path / "s"), "-q")
    assert single.exit_code == 0 and "tracked 1 object through 8 frames" in single.output


def test_random_bytes_are_not_a_checkpoint(tmp_path):
    bad = tmp_path / "random.pth"
    for seed in range(40):  # random bytes fail in several ways inside torch.load
        bad.write_bytes(np.random.default_rng(seed).bytes(4096))
        with pytest.raises(
            WeightsError, match=r"not a loadable PyTorch checkpoint \(torch.load with.*tensors\)$"
        ):
            models.load_state_dict(bad)


def test_a_failed_download_says_how_to_get_the_file(tmp_path, monkeypatch):
    import dataclasses

    from persam_video.model import checkpoints

    monkeypatch.setenv("PERSAM_VIDEO_CACHE", str(tmp_path / "cache"))
    unreachable = "http://127.0.0.1:9/sam_vit_b.pth"  # the discard port: refused at once
    moved = dataclasses.replace(checkpoints.CHECKPOINTS["vit_b"], url=unreachable)
    monkeypatch.setitem(checkpoints.CHECKPOINTS, "vit_b", moved)
    offline = invoke("weights", "download", "vit_b", "-q")
    assert offline.exit_code == 2, offline.output
    assert "download it yourself and save it as" in offline.output
    assert "--checkpoint" not in offline.output  # weights download has no such option
    assert not list((tmp_path / "cache").rglob("*.pth"))  # nothing half-downloaded is kept


def labels_one_object(tmp_path: Path) -> Path:
    labels = synthetic_labels(0, SIZE)
    labels[labels == 2] = 0
    path = tmp_path / "one.png"
    write_label_png(path, labels)
    return path


def test_folder_results_give_the_frame_rate_used(tmp_path, fake_model):
    frames = tmp_path / "frames"
    frames.mkdir()
    with open_source_frames(tmp_path) as video_frames:
        for i, frame in enumerate(video_frames):
            Image.fromarray(frame.rgb).save(frames / f"{i:03d}.png")
    mask = tmp_path / "m.png"
    write_label_png(mask, synthetic_labels(0, SIZE))
    out = tmp_path / "o"
    assert invoke("track", str(frames), "--mask", str(mask), "--out", str(out), "-q").exit_code == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["input"]["fps"] == "24" and doc["input"]["fps_from"] == "default"
    assert probe(out / "overlay.mp4").fps == 24


def open_source_frames(tmp_path: Path):
    video = tmp_path / "src.mp4"
    make_video(video, n_frames=4, size_hw=SIZE)
    return open_source(video)


def test_start_and_max_frames(tmp_path, fake_model):
    video = tmp_path / "clip.mp4"
    make_video(video, n_frames=12, size_hw=SIZE, audio=True)
    mask = tmp_path / "m3.png"
    write_label_png(mask, synthetic_labels(3, SIZE))
    out = tmp_path / "o"
    result = invoke(
        "track",
        str(video),
        "--mask",
        str(mask),
        "--out",
        str(out),
        "-q",
        "--start",
        "3",
        "--max-frames",
        "4",
    )
    assert result.exit_code == 0, result.output
    masks = sorted((out / "masks").iterdir())
    assert [p.name for p in masks] == [f"{i:05d}.png" for i in range(4)]
    np.testing.assert_array_equal(read_mask(masks[0]), synthetic_labels(3, SIZE))
    doc = json.loads((out / "results.json").read_text())
    assert doc["input"]["start"] == 3 and doc["input"]["max_frames"] == 4
    assert doc["frames"][0]["time"] == 0.0 and len(doc["frames"]) == 4
    info = probe(out / "overlay.mp4")
    assert info.num_frames == 4 and not info.has_audio  # audio would be out of step
    past = invoke(
        "track",
        str(video),
        "--mask",
        str(mask),
        "--out",
        str(tmp_path / "p"),
        "-q",
        "--start",
        "40",
    )
    assert past.exit_code == 2 and "--start 40 is past the last frame (the input has 12" in (
        past.output
    )


def test_frame_export(tmp_path):
    video = tmp_path / "clip.mp4"
    make_video(video, n_frames=6, size_hw=SIZE)
    out = tmp_path / "f.png"
    result = invoke("frame", str(video), "4", "-o", str(out))
    assert result.exit_code == 0 and "wrote frame 4 (64x48)" in result.output
    with open_source(video) as frames:
        expected = [f.rgb for f in frames][4]
    np.testing.assert_array_equal(np.array(Image.open(out)), expected)
    past = invoke("frame", str(video), "6", "-o", str(tmp_path / "g.png"))
    assert past.exit_code == 2 and "has 6 frames (0-5)" in past.output
    assert not (tmp_path / "g.png").exists()
    wrong = invoke("frame", str(video), "1", "-o", str(tmp_path / "g.gif"))
    assert wrong.exit_code == 2 and ".png" in wrong.output


def test_config_show_prints_the_effective_config(tmp_path):
    result = invoke("config", "show", "--config", "fast", "--set", "track.momentum=0.7")
    assert result.exit_code == 0, result.output
    path = tmp_path / "shown.yaml"
    path.write_text(result.output)
    expected = load_config("fast").with_overrides(["track.momentum=0.7"])
    assert load_config(path) == expected
    assert "# e_t = momentum * e_{t-1}" in result.output
    bad = invoke("config", "show", "--set", "track.nope=1")
    assert bad.exit_code == 2 and "unknown config key" in bad.output
