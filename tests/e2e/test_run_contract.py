"""What a run leaves behind (the contract in docs/outputs.md), sentence by sentence: after
success, a failure in the middle, a full disk, Ctrl-C/SIGTERM, SIGKILL, a second run into the
same folder, and a rerun; plus the inputs that used to fake completeness (a truncated Matroska
file, a portrait phone video, EXIF-rotated frames, a damaged frame in a folder)."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from persam_video.apps.target_file import save_target
from persam_video.atomic import (
    LOCK_NAME,
    MANIFEST_NAME,
    MARKER_NAME,
    STAGING_PREFIX,
    folder_lock,
    make_marked_folder,
)
from persam_video.cli import cli
from persam_video.config import PerSAMConfig
from persam_video.io import VideoDecodeError, open_source, read_mask, write_label_png
from persam_video.io._video_decode import decode_video
from persam_video.io.probe import probe
from persam_video.persam import Target
from tests.helpers import REPO_ROOT, dead_pid, small_clip, small_frames, start_long_track
from tests.video_factory import make_video, synthetic_labels

SIZE = (48, 64)


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def track(video: Path, mask: Path, out: Path, *extra: str):
    return invoke("track", str(video), "--mask", str(mask), "--out", str(out), "-q", *extra)


def names(folder: Path) -> set[str]:
    """What a folder holds, less the record of its outputs (tested on its own)."""
    return {p.name for p in folder.iterdir()} - {MANIFEST_NAME}


def record_as_outputs(folder: Path, *extra: str) -> None:
    """Add ``extra`` to the folder's record of its outputs, as an older run would have."""
    record = json.loads((folder / MANIFEST_NAME).read_text())
    record["outputs"] = sorted({*record["outputs"], *extra})
    (folder / MANIFEST_NAME).write_text(json.dumps(record))


@pytest.fixture
def clip(tmp_path):
    return small_clip(tmp_path)


# --------------------------------------------------------------------------- success, reruns
def test_a_run_leaves_exactly_its_outputs_and_a_rerun_removes_the_older_ones(
    tmp_path, clip, fake_model
):
    video, mask = clip
    out = tmp_path / "out"
    first = track(video, mask, out, "--masked-video", "cutout")
    assert first.exit_code == 0, first.output
    assert names(out) == {"masks", "overlay.mp4", "masked.mp4", "report.html", "results.json"}
    (out / "notes.txt").write_text("mine")  # the user's own file
    (out / "masks.partial").mkdir()  # what an interrupted older run kept
    (out / "overlay.partial.mp4").write_bytes(b"old")
    record_as_outputs(out, "masks.partial", "overlay.partial.mp4")
    second = track(video, mask, out, "--no-overlay")
    assert second.exit_code == 0, second.output
    assert names(out) == {"masks", "report.html", "results.json", "notes.txt"}
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "results.json").read_text())["status"] == "complete"


def test_stale_temporaries_of_dead_processes_are_removed_by_the_next_run(
    tmp_path, clip, fake_model
):
    video, mask = clip
    out = tmp_path / "out"
    out.mkdir()
    pid = dead_pid()
    stale, alive = make_marked_folder(out, STAGING_PREFIX), make_marked_folder(out, STAGING_PREFIX)
    (stale / "masks").mkdir()
    (stale / "masks" / "00000.png").write_bytes(b"x")
    for folder, owner in ((stale, pid), (alive, os.getppid())):  # a live process's: kept
        (folder / MARKER_NAME).write_text(json.dumps({"tool": "persam-video", "pid": owner}))
    unmarked = out / f"{STAGING_PREFIX}mine"  # our name, no marker: the user's
    unmarked.mkdir()
    (out / f".notes.partial-{pid}.txt").write_text("mine")  # the old temporaries' names
    (out / f".thesis.partial-{pid}").mkdir()
    (out / f".thesis.partial-{pid}" / "ch1.tex").write_text("mine")
    result = track(video, mask, out)
    assert result.exit_code == 0, result.output
    users = {alive.name, unmarked.name, f".notes.partial-{pid}.txt", f".thesis.partial-{pid}"}
    assert names(out) == {"masks", "overlay.mp4", "report.html", "results.json", *users}
    assert (out / f".thesis.partial-{pid}" / "ch1.tex").read_text() == "mine"


@pytest.mark.slow
def test_sigkill_leaves_only_hidden_temporaries_and_the_next_run_removes_them(tmp_path):
    process, video, mask, out = start_long_track(tmp_path, frames_written=2, capture=False)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    left = names(out)
    assert left and all(name.startswith(".") for name in left)  # nothing looks like output
    assert "results.json" not in left and "masks" not in left
    rerun = track(video, mask, out, "--model", "demo", "--max-frames", "2")
    assert rerun.exit_code == 0, rerun.output
    assert names(out) == {"masks", "overlay.mp4", "report.html", "results.json"}


# --------------------------------------------------------------------------- locks
HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from persam_video.atomic import folder_lock
    with folder_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(120)
""")


def test_a_second_run_into_a_folder_in_use_is_refused_and_a_killed_holder_frees_it(
    tmp_path, clip, fake_model
):
    video, mask = clip
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(out)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        refused = track(video, mask, out)
        assert refused.exit_code == 2
        assert f"another persam-video run (pid {holder.pid}) is writing to" in refused.output
        assert names(out) == {LOCK_NAME}  # the second run wrote nothing
    finally:
        holder.kill()
        holder.wait()
    result = track(video, mask, out)  # the kernel dropped the dead holder's lock
    assert result.exit_code == 0, result.output
    # the lock file is gone
    assert names(out) == {"masks", "overlay.mp4", "report.html", "results.json"}


def test_the_lock_is_exclusive_between_open_files(tmp_path):
    with folder_lock(tmp_path):
        with pytest.raises(ValueError, match=rf"pid {os.getpid()}"), folder_lock(tmp_path):
            pass
    assert not (tmp_path / LOCK_NAME).exists()
    with folder_lock(tmp_path):  # free again
        pass


# --------------------------------------------------------------------------- failures
@pytest.mark.parametrize("where", ["overlay", "results"])
def test_a_full_disk_leaves_no_output_and_keeps_the_older_run(
    tmp_path, clip, fake_model, monkeypatch, where
):
    from persam_video.io import writer

    video, mask = clip
    out = tmp_path / "out"
    assert track(video, mask, out).exit_code == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def full(path: Path) -> OSError:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    if where == "overlay":

        def close(self, *, move: bool = True):
            self.abort()
            raise full(self.path)

        monkeypatch.setattr(writer.VideoWriter, "close", close)
    else:
        real_write_text = Path.write_text

        def write_text(self, *args, **kwargs):
            if self.name == "results.json" and self.parent.name.startswith(STAGING_PREFIX):
                raise full(self)
            return real_write_text(self, *args, **kwargs)

        monkeypatch.setattr(Path, "write_text", write_text)
    result = track(video, mask, out, "--masked-video", "blur")
    assert result.exit_code == 2
    assert "No space left on device" in result.output and "Traceback" not in result.output
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # not one file of the failed run, the older run intact


def test_a_full_disk_in_a_fresh_folder_leaves_nothing(tmp_path, clip, fake_model, monkeypatch):
    from persam_video.io import writer

    def close(self, *, move: bool = True):
        self.abort()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))

    monkeypatch.setattr(writer.VideoWriter, "close", close)
    video, mask = clip
    out = tmp_path / "fresh"
    assert track(video, mask, out).exit_code == 2
    assert not out.exists()


def test_a_frame_rate_the_outputs_cannot_time_is_refused_up_front(tmp_path, fake_model):
    frames, mask = small_frames(tmp_path, 2)
    for fps in ("1e-9", "5000"):
        result = track(frames, mask, tmp_path / "out", "--fps", fps)
        assert result.exit_code == 2
        assert "expected a frame rate from 1/1000 to 1000" in result.output
    assert not (tmp_path / "out").exists()


def test_a_damaged_frame_in_a_folder_keeps_the_frames_before_it(tmp_path, fake_model):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(6):
        Image.fromarray(np.full((*SIZE, 3), 30 * i, np.uint8)).save(frames / f"{i:02d}.png")
    damaged = frames / "03.png"
    damaged.write_bytes(damaged.read_bytes()[:60])  # header intact, pixels cut
    mask = tmp_path / "m.png"
    write_label_png(mask, synthetic_labels(0, SIZE))
    out = tmp_path / "out"
    result = track(frames, mask, out)
    assert result.exit_code == 2 and "cannot decode frame 3" in result.output
    doc = json.loads((out / "results.partial.json").read_text())
    assert doc["status"] == "partial" and len(doc["frames"]) == 3
    assert len(list((out / "masks.partial").iterdir())) == 3
    kept = {"masks.partial", "overlay.partial.mp4", "report.partial.html", "results.partial.json"}
    assert names(out) == kept


def test_a_video_without_a_decodable_frame_writes_nothing(tmp_path, fake_model):
    video = tmp_path / "clip.mkv"
    make_video(video, n_frames=30, size_hw=SIZE, fps=30)
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 5])  # the header and no whole frame
    assert probe(video).duration == 1.0
    mask = tmp_path / "m.png"
    write_label_png(mask, synthetic_labels(0, SIZE))
    out = tmp_path / "out"
    result = track(video, mask, out)
    assert result.exit_code == 2 and "no decodable frame" in result.output
    assert not out.exists()


def test_segment_with_a_bad_second_image_writes_nothing(tmp_path, fake_model):
    album = tmp_path / "album"
    album.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), np.uint8)).save(album / name)
    target = tmp_path / "t.target"
    save_target(
        target, Target(torch.randn(32)), model={"model": "vit_b"}, config=PerSAMConfig(), shots=1
    )
    out = tmp_path / "found"
    (album / "b.png").write_bytes((album / "b.png").read_bytes()[:80])  # pixels cut
    damaged = invoke("segment", str(album), "--target", str(target), "--out", str(out))
    assert damaged.exit_code == 2 and "b.png" in damaged.output
    assert not out.exists()
    (album / "b.png").write_text("not an image")  # refused before any image is segmented
    refused = invoke("segment", str(album), "--target", str(target), "--out", str(out))
    assert refused.exit_code == 2 and "b.png" in refused.output
    assert not out.exists()


# --------------------------------------------------------------------------- honest inputs
def test_a_truncated_matroska_file_is_partial_with_the_missing_count(tmp_path, fake_model):
    video = tmp_path / "clip.mkv"
    make_video(video, n_frames=30, size_hw=SIZE, fps=30)
    with open_source(video) as frames:
        assert sum(1 for _ in frames) == 30  # the complete file is complete
    data = video.read_bytes()
    video.write_bytes(data[: int(len(data) * 0.7)])  # no frame count in a Matroska header
    with open_source(video) as frames:
        assert frames.num_frames == 30  # from the duration the header keeps
        decoded = 0
        with pytest.raises(VideoDecodeError, match=r"about 30 frames, so about \d+ are missing"):
            for _ in frames:
                decoded += 1
    assert 0 < decoded < 30
    mask = tmp_path / "m.png"
    write_label_png(mask, synthetic_labels(0, SIZE))
    out = tmp_path / "out"
    result = track(video, mask, out)
    assert result.exit_code == 2 and "are missing" in result.output
    doc = json.loads((out / "results.partial.json").read_text())
    assert doc["status"] == "partial" and len(doc["frames"]) == decoded
    assert doc["input"]["frames_expected"] == 30


@pytest.mark.parametrize("rotation", [90, 180, 270])
@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_a_display_matrix_turns_frames_as_players_show_them(tmp_path, rotation, decoder):
    from persam_video.io._video_decode import open_decord

    video = tmp_path / "phone.mp4"
    stored = make_video(video, n_frames=3, size_hw=SIZE, rotation=rotation)
    info = probe(video)
    turns = rotation // 90
    assert info.rotation == rotation and info.coded_size_hw == SIZE
    assert info.size_hw == (SIZE if turns % 2 == 0 else SIZE[::-1])
    reader = open_decord(video) if decoder == "decord" else None
    frames = [f.rgb for f in decode_video(video, info, reader)]
    assert len(frames) == 3
    for got, original in zip(frames, stored, strict=True):
        upright = np.rot90(original, turns)
        assert got.shape == upright.shape
        error = np.abs(got.astype(int) - upright).mean()
        wrong = np.abs(got.astype(int) - np.rot90(original, turns + 2)).mean()
        assert error < 8 < wrong


def test_a_portrait_video_is_tracked_with_a_mask_drawn_on_what_players_show(tmp_path, fake_model):
    video = tmp_path / "phone.mp4"
    make_video(video, n_frames=3, size_hw=SIZE, rotation=90)
    shown = SIZE[::-1]
    mask = tmp_path / "m.png"
    write_label_png(mask, synthetic_labels(0, shown))
    out = tmp_path / "out"
    result = track(video, mask, out)
    assert result.exit_code == 0, result.output
    assert read_mask(out / "masks" / "00002.png").shape == shown
    with open_source(out / "overlay.mp4") as overlay:
        assert overlay.size == shown  # written upright, without a matrix
        assert probe(out / "overlay.mp4").rotation == 0
    coded = tmp_path / "coded.png"
    write_label_png(coded, synthetic_labels(0, SIZE))
    refused = track(video, coded, tmp_path / "out2")
    assert refused.exit_code == 2 and "--resize-mask" in refused.output


def test_exif_orientation_of_frames_and_masks_is_applied(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    stored = np.zeros((*SIZE, 3), np.uint8)
    stored[:10, :20] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise
    for i in range(2):
        Image.fromarray(stored).save(frames / f"{i}.jpg", exif=exif, quality=95)
    with open_source(frames) as source:
        assert source.size == SIZE[::-1]
        first = next(iter(source)).rgb
    upright = np.rot90(stored, -1)  # clockwise
    assert np.abs(first.astype(int) - upright).mean() < 8
    labels = np.zeros(SIZE, np.uint8)
    labels[:10, :20] = 1
    mask = tmp_path / "m.png"
    Image.fromarray(labels, mode="L").save(mask, exif=exif)
    assert np.array_equal(read_mask(mask), np.rot90(labels, -1))


def test_segment_batch_and_davis_refuse_a_folder_in_use(tmp_path, clip, fake_model):
    from persam_video.synthetic.export import write_davis

    video, mask = clip
    out = tmp_path / "busy"
    out.mkdir()
    album = tmp_path / "album"
    album.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(album / "a.png")
    target = tmp_path / "t.target"
    save_target(
        target, Target(torch.randn(32)), model={"model": "vit_b"}, config=PerSAMConfig(), shots=1
    )
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"input,mask,name\n{video},{mask},c0\n")
    root = tmp_path / "davis"
    write_davis(root, [1000])
    commands = {
        "segment": ["segment", str(album), "--target", str(target), "--out", str(out)],
        "batch": ["batch", str(manifest), "--out", str(out), "-q"],
        "davis": ["davis", "--davis-root", str(root), "--out", str(out), "-q"],
    }
    with folder_lock(out):
        for name, args in commands.items():
            result = invoke(*args)
            assert result.exit_code == 2, (name, result.output)
            assert "another persam-video run" in result.output, name
        assert names(out) == {LOCK_NAME}


def test_frames_exported_for_drawing_a_mask_are_upright(tmp_path):
    video = tmp_path / "phone.mp4"
    make_video(video, n_frames=2, size_hw=SIZE, rotation=270)
    frame = tmp_path / "f.png"
    assert invoke("frame", str(video), "1", "-o", str(frame)).exit_code == 0
    with Image.open(frame) as image:
        assert image.size == SIZE  # (W, H) of the upright frame: the stored H, W swapped


def test_segment_results_are_strict_json_when_a_score_is_not_finite(
    tmp_path, fake_model, monkeypatch
):
    from persam_video.persam import api

    album = tmp_path / "album"
    album.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(album / "a.png")
    target = tmp_path / "t.target"
    save_target(
        target, Target(torch.randn(32)), model={"model": "vit_b"}, config=PerSAMConfig(), shots=1
    )
    real = api.PerSAM.segment_features

    def nan_scores(self, *args, **kwargs):
        return [
            dataclasses.replace(p, score=float("nan"), peak_similarity=float("inf"))
            for p in real(self, *args, **kwargs)
        ]

    monkeypatch.setattr(api.PerSAM, "segment_features", nan_scores)
    out = tmp_path / "found"
    result = invoke("segment", str(album), "--target", str(target), "--out", str(out))
    assert result.exit_code == 0, result.output
    text = (out / "results.json").read_text()

    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    (record,) = json.loads(text, parse_constant=refuse)["images"]
    assert record["score"] is None and record["peak_similarity"] is None
