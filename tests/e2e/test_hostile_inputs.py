"""Inputs a hostile or unlucky user gives: non-finite or aliased config values, damaged target
files, a BOM in a manifest, Ctrl-C in a batch, SIGTERM during a track."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import save_file

from persam_video.apps.target_file import load_target, save_target
from persam_video.cli import cli
from persam_video.config import ConfigError, PerSAMConfig, load_config
from persam_video.io import write_label_png
from persam_video.persam import Target
from tests.helpers import leftovers, start_long_track
from tests.video_factory import make_video, synthetic_labels

SIZE = (48, 64)


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_config_values_are_refused(value, tmp_path):
    with pytest.raises(ConfigError, match="finite number"):
        PerSAMConfig().with_overrides([f"track.momentum={value}"])
    path = tmp_path / "c.yaml"
    path.write_text(f"track:\n  box_margin: {value}\n")
    with pytest.raises(ConfigError, match="finite number"):
        load_config(path)


def test_yaml_aliases_are_refused_and_messages_stay_short(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    lines += [
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}" + f",*{chr(97 + i)}" * 8 + "]"
        for i in range(8)
    ]
    bomb.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="aliases") as info:
        load_config(bomb)
    assert len(str(info.value)) < 200
    with pytest.raises(ConfigError) as info:
        PerSAMConfig().with_overrides(["track.momentum=[" + "x" * 10_000])
    assert len(str(info.value)) < 300
    result = invoke("config", "show", "--config", str(bomb))
    assert result.exit_code == 2 and len(result.output) < 300


def test_damaged_target_files_are_refused_in_one_line(tmp_path):
    nan = tmp_path / "nan.target"
    save_target(
        nan,
        Target(torch.full((32,), float("nan"))),
        model={"model": "demo"},
        config=PerSAMConfig(),
        shots=1,
    )
    with pytest.raises(ValueError, match="NaN or infinite"):
        load_target(nan)
    wrong = tmp_path / "wrong.target"
    metadata = {
        "format": "persam-video target",
        "format_version": "1",
        "persam_video": "0.1",
        "model": "[1, 2]",
        "config": "{}",
        "shots": "1",
    }
    save_file({"embedding": torch.zeros(32)}, str(wrong), metadata=metadata)
    with pytest.raises(ValueError, match="invalid metadata") as info:
        load_target(wrong)
    assert "\n" not in str(info.value)
    missing = tmp_path / "missing.target"
    save_file(
        {"embedding": torch.zeros(32)},
        str(missing),
        metadata={"format": "persam-video target", "format_version": "1"},
    )
    with pytest.raises(ValueError, match="invalid metadata"):
        load_target(missing)


def _clips(tmp_path, count: int, n_frames: int = 4):
    mask = tmp_path / "m.png"
    write_label_png(mask, synthetic_labels(0, SIZE))
    rows = []
    for i in range(count):
        video = tmp_path / f"c{i}.mp4"
        make_video(video, n_frames=n_frames, size_hw=SIZE)
        rows.append(f"{video.name},{mask.name},c{i}")
    return mask, rows


def test_a_manifest_with_a_bom_is_read(tmp_path):
    _, rows = _clips(tmp_path, 1)
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(("\ufeffinput,mask,name\n" + "\n".join(rows) + "\n").encode("utf-8"))
    result = invoke(
        "batch",
        str(manifest),
        "--out",
        str(tmp_path / "runs"),
        "--model",
        "demo",
        "-q",
        "--no-overlay",
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "c0" / "done.json").is_file()


def test_ctrl_c_stops_the_batch_and_a_rerun_resumes(tmp_path, monkeypatch):
    from persam_video.video.tracker import VideoTracker

    _, rows = _clips(tmp_path, 3)
    manifest = tmp_path / "m.csv"
    manifest.write_text("input,mask,name\n" + "\n".join(rows) + "\n")
    original = VideoTracker.step_features
    calls = {"n": 0}

    def interrupt_in_the_second_clip(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # clip c0 has 3 tracked frames; this is c1's second
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(VideoTracker, "step_features", interrupt_in_the_second_clip)
    out = tmp_path / "runs"
    args = ("batch", str(manifest), "--out", str(out), "--model", "demo", "-q", "--no-overlay")
    stopped = invoke(*args)
    assert stopped.exit_code == 130 and "run the same command again" in stopped.output
    assert (out / "c0" / "done.json").is_file()
    assert not (out / "c1").exists() and not (out / "c2").exists()  # c2 never started
    assert not leftovers(out)  # no temporaries left
    assert (out / "failures.jsonl").read_text() == ""  # an interruption is not a failure
    monkeypatch.setattr(VideoTracker, "step_features", original)
    resumed = invoke(*args)
    assert resumed.exit_code == 0, resumed.output
    assert "2 done, 1 already done, 0 failed" in resumed.output


@pytest.mark.slow
def test_sigterm_keeps_the_partial_results_like_ctrl_c(tmp_path):
    process, _, _, out = start_long_track(tmp_path, frames_written=3, capture=True)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    doc = json.loads((out / "results.partial.json").read_text())
    assert doc["status"] == "interrupted"
    assert len(list((out / "masks.partial").iterdir())) == len(doc["frames"]) >= 3
    assert not leftovers(out)  # no hidden temporaries


def test_unwritable_output_files_are_refused_before_the_work(tmp_path, fake_model):
    from persam_video.synthetic.export import write_davis

    root = tmp_path / "davis"
    write_davis(root, [1000])
    missing = tmp_path / "no" / "such" / "report.json"
    out = tmp_path / "results"
    tracked = invoke(
        "davis", "--davis-root", str(root), "--out", str(out), "-q", "--json", str(missing)
    )
    assert tracked.exit_code == 2 and "does not exist" in tracked.output
    assert not out.exists()  # refused before any tracking
    folder = tmp_path / "a-folder"
    folder.mkdir()
    image = tmp_path / "ref.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    mask = tmp_path / "m.png"
    labels = np.zeros((32, 32), np.uint8)
    labels[8:20, 8:20] = 1
    write_label_png(mask, labels)
    made = invoke("personalize", str(image), "--mask", str(mask), "--out", str(folder))
    assert made.exit_code == 2 and "is a directory" in made.output  # click refuses it first
    video = tmp_path / "clip.mp4"
    make_video(video, n_frames=2, size_hw=SIZE)
    frame = invoke("frame", str(video), "0", "-o", str(tmp_path / "nope" / "f.png"))
    assert frame.exit_code == 2 and "does not exist" in frame.output


def test_decompression_bombs_and_corrupt_results_are_one_line(tmp_path, monkeypatch):
    from PIL import Image as PILImage

    from persam_video.eval.davis_dataset import read_label_png
    from persam_video.io import VideoReadError, read_image, read_mask

    path = tmp_path / "big.png"
    PILImage.new("L", (300, 300)).save(path)
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1000)  # 300 x 300 is then a "bomb"
    with pytest.raises(ValueError, match="cannot read") as info:
        read_mask(path)
    assert "\n" not in str(info.value)
    with pytest.raises(VideoReadError, match="cannot read"):
        read_image(path)
    with pytest.raises(ValueError, match="cannot read a label PNG"):
        read_label_png(path)
    garbage = tmp_path / "corrupt.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(ValueError, match="cannot read a label PNG"):
        read_label_png(garbage)


def test_more_points_than_pixels_is_one_line(tmp_path, fake_model):
    video = tmp_path / "clip.mp4"
    make_video(video, n_frames=3, size_hw=(32, 32))
    mask = tmp_path / "m.png"
    labels = np.zeros((32, 32), np.uint8)
    labels[8:24, 8:24] = 1
    write_label_png(mask, labels)
    result = invoke(
        "track",
        str(video),
        "--mask",
        str(mask),
        "--out",
        str(tmp_path / "o"),
        "-q",
        "--set",
        "prior.num_positive=2000",
    )
    assert result.exit_code == 2 and "frame has only 1024 pixels" in result.output


def test_batch_reruns_with_other_settings_are_refused_or_redone(tmp_path):
    _, rows = _clips(tmp_path, 2)
    manifest = tmp_path / "m.csv"
    manifest.write_text("input,mask,name,overrides\n" + "\n".join(f"{r}," for r in rows) + "\n")
    out = tmp_path / "runs"
    args = ["batch", str(manifest), "--out", str(out), "--model", "demo", "-q", "--no-overlay"]
    assert invoke(*args).exit_code == 0
    other = invoke(*args, "--set", "track.momentum=0.5")
    assert other.exit_code == 2 and "holds results of another run (different config)" in (
        other.output
    )
    changed = rows[1] + ",decode.refine_steps=1"
    manifest.write_text(f"input,mask,name,overrides\n{rows[0]},\n{changed}\n")
    rerun = invoke(*args)
    assert rerun.exit_code == 0, rerun.output
    assert "1 done, 1 already done, 0 failed" in rerun.output
    assert "redone: its inputs or overrides changed" in rerun.output
    done = json.loads((out / "c1" / "done.json").read_text())
    assert done["clip"]["overrides"] == ["decode.refine_steps=1"]


@pytest.mark.parametrize("text", ["1: 2\n", "track:\n  3: x\n"])
def test_config_files_with_keys_that_are_not_names_are_one_line(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="is not a name"):
        load_config(str(path))
    result = invoke("config", "show", "--config", str(path))
    assert result.exit_code == 2 and "is not a name" in result.output
    assert "Traceback" not in result.output


def test_personalize_has_the_resize_mask_it_suggests(tmp_path, fake_model):
    image = tmp_path / "ref.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(image)
    mask = tmp_path / "small.png"
    labels = np.zeros((32, 32), np.uint8)
    labels[5:20, 5:20] = 1
    write_label_png(mask, labels)
    target = tmp_path / "t.target"
    refused = invoke("personalize", str(image), "--mask", str(mask), "-o", str(target))
    assert refused.exit_code == 2 and "pass --resize-mask" in refused.output
    made = invoke(
        "personalize", str(image), "--mask", str(mask), "-o", str(target), "--resize-mask"
    )
    assert made.exit_code == 0, made.output
    assert target.is_file()
