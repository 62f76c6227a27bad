"""A run touches nothing but its own files, tried as a hostile or careless user would: links
planted at the lock, the record, temporary and output names; the user's look-alikes of our
temporaries; the user's files under output names; reports aimed at inputs; one command's run
folder reused by another; a rerun stopped over a complete run; the app given a pipe, a busy
port, and the folder of a killed app."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import threading
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
    OutputClaim,
    claim_outputs,
    make_marked_folder,
    marker_pid,
)
from persam_video.cli import cli
from persam_video.config import PerSAMConfig
from persam_video.io import write_label_png
from persam_video.persam import Target
from persam_video.synthetic.export import write_davis
from persam_video.video import VideoTracker
from tests.helpers import dead_pid, leftovers, small_clip, small_frames, start_long_track
from tests.video_factory import make_video, synthetic_labels

SIZE = (48, 64)
COMPLETE = {"masks", "overlay.mp4", "report.html", "results.json"}


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def track(video, mask, out, *extra: str):
    return invoke("track", str(video), "--mask", str(mask), "--out", str(out), "-q", *extra)


def names(folder) -> set[str]:
    return {p.name for p in folder.iterdir()} - {MANIFEST_NAME}


def snapshot(folder) -> dict:
    """Every file under ``folder`` (links not followed) with its bytes, less the record of its
    outputs."""
    return {
        p.relative_to(folder): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and not p.is_symlink() and p.name != MANIFEST_NAME
    }


def mark_as(folder, pid: int) -> None:
    """Rewrite a marked folder's marker as if process ``pid`` had made it."""
    (folder / MARKER_NAME).write_text(json.dumps({"tool": "persam-video", "pid": pid}))


@pytest.fixture
def clip(tmp_path):
    return small_clip(tmp_path)


def refused_in_one_line(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    for word in words:
        assert word in result.output, result.output


# --------------------------------------------------------------------------- links
def test_a_lock_planted_as_a_link_is_refused_and_nothing_is_written_through_it(
    tmp_path, clip, fake_model
):
    video, mask = clip
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).symlink_to(victim)
    refused_in_one_line(track(video, mask, out), "lock file")
    assert victim.read_text() == "precious"
    assert names(out) == {LOCK_NAME} and not (out / MANIFEST_NAME).exists()
    (out / LOCK_NAME).unlink()
    os.link(victim, out / LOCK_NAME)  # a hard link: the same file under the lock's name
    refused_in_one_line(track(video, mask, out), "lock file")
    assert victim.read_text() == "precious"
    os.mkfifo(out / "fifo")
    (out / LOCK_NAME).unlink()
    (out / "fifo").rename(out / LOCK_NAME)  # not a file at all
    refused_in_one_line(track(video, mask, out), "lock file")


def test_a_record_planted_as_a_link_is_refused(tmp_path, clip, fake_model):
    video, mask = clip
    victim = tmp_path / "victim.json"
    victim.write_text('{"precious": true}')
    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST_NAME).symlink_to(victim)
    refused_in_one_line(track(video, mask, out), MANIFEST_NAME)
    assert victim.read_text() == '{"precious": true}'
    (out / MANIFEST_NAME).unlink()
    (out / MANIFEST_NAME).write_text("[1, 2]")  # not our record
    refused_in_one_line(track(video, mask, out), "not persam-video's record")


def test_links_at_temporary_and_output_names_are_replaced_never_written_through(
    tmp_path, clip, fake_model
):
    video, mask = clip
    out = tmp_path / "out"
    assert track(video, mask, out).exit_code == 0  # a complete run: its outputs are ours
    outside = tmp_path / "outside"
    outside.mkdir()
    pid = os.getpid()  # the old temporaries' names, for this very process
    old = [
        f".results.partial-{pid}.json",
        f".report.partial-{pid}.html",
        f".overlay.partial-{pid}.mp4",
    ]
    planted = [*old, "results.json", "overlay.mp4", "report.html"]
    for name in planted:
        victim = outside / name.lstrip(".")
        victim.write_text("precious")
        victim.chmod(0o600)
        (out / name).unlink(missing_ok=True)
        (out / name).symlink_to(victim)
    shutil.rmtree(out / "masks")
    (outside / "masks").mkdir()
    (outside / "masks" / "keep.txt").write_text("precious")
    (out / "masks").symlink_to(outside / "masks", target_is_directory=True)
    before = {p: (p.read_bytes(), p.stat().st_mode) for p in outside.rglob("*") if p.is_file()}
    result = track(video, mask, out)
    assert result.exit_code == 0, result.output
    after = {p: (p.read_bytes(), p.stat().st_mode) for p in outside.rglob("*") if p.is_file()}
    assert after == before
    for name in COMPLETE:  # the links were replaced by this run's outputs
        assert not (out / name).is_symlink() and (out / name).exists()
    assert json.loads((out / "results.json").read_text())["status"] == "complete"
    assert len(list((out / "masks").iterdir())) == 4
    for name in old:  # links under names that are not ours are the user's: kept
        assert (out / name).is_symlink()


# --------------------------------------------------------------------------- sweeping
def test_only_marked_temporaries_of_dead_processes_are_swept(tmp_path):
    from persam_video.atomic import STAGING_PREFIX, remove_stale_temporaries

    pid = dead_pid()
    stale = make_marked_folder(tmp_path, STAGING_PREFIX)
    mark_as(stale, pid)
    alive = make_marked_folder(tmp_path, STAGING_PREFIX)
    mark_as(alive, os.getppid())
    unmarked = tmp_path / f"{STAGING_PREFIX}mine"
    unmarked.mkdir()
    linked = tmp_path / f"{STAGING_PREFIX}link"  # a link to a marked folder is not one
    linked.symlink_to(stale, target_is_directory=True)
    foreign = tmp_path / f"{STAGING_PREFIX}foreign"
    foreign.mkdir()
    (foreign / MARKER_NAME).write_text(json.dumps({"tool": "other", "pid": pid}))
    assert marker_pid(stale) == pid and marker_pid(linked) is None
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert {p.name for p in tmp_path.iterdir()} == {
        alive.name,
        unmarked.name,
        linked.name,
        foreign.name,
    }


def test_batch_clip_names_may_not_be_patterns_and_hidden_files_of_the_user_survive(tmp_path):
    video = tmp_path / "c.mp4"
    make_video(video, n_frames=2, size_hw=SIZE)
    mask = tmp_path / "m.png"
    write_label_png(mask, synthetic_labels(0, SIZE))
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / ".draft.partial-v2.txt").write_text("mine")
    (runs / ".thesis.partial-424242").mkdir()
    (runs / ".thesis.partial-424242" / "ch1.tex").write_text("mine")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"input,mask,name\n{video},{mask},*\n")
    args = ("batch", str(manifest), "--out", str(runs), "--model", "demo", "-q", "--no-overlay")
    result = invoke(*args)
    assert result.exit_code == 2 and "pattern character" in result.output
    manifest.write_text(f"input,mask,name\n{video},{mask},c0\n")
    assert invoke(*args).exit_code == 0
    assert (runs / ".draft.partial-v2.txt").read_text() == "mine"
    assert (runs / ".thesis.partial-424242" / "ch1.tex").read_text() == "mine"
    assert (runs / "c0" / "done.json").is_file()


# --------------------------------------------------------------------------- the user's files
USERS_FILES = ["masks/gt_00000.png", "masks.jsonl", "prompt_masks/", "report.html"]


def plant(out, entry: str) -> None:
    path = out / entry
    if entry.endswith("/"):
        path.mkdir(parents=True)
        (path / "mine.txt").write_text("mine")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("mine")


@pytest.mark.parametrize("entry", USERS_FILES)
def test_a_first_run_refuses_a_folder_with_the_users_files_under_output_names(
    tmp_path, clip, fake_model, entry
):
    video, mask = clip
    out = tmp_path / "out"
    out.mkdir()
    plant(out, entry)
    before = snapshot(out)
    first_part = entry.split("/")[0]
    refused_in_one_line(track(video, mask, out), f"{out / first_part} was not made by")
    assert snapshot(out) == before and names(out) == {first_part}
    assert not (out / MANIFEST_NAME).exists()


def test_the_users_files_survive_beside_a_run_and_its_reruns(tmp_path, clip, fake_model):
    video, mask = clip
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert track(video, mask, out).exit_code == 0
    rerun = track(video, mask, out, "--format", "coco-rle")
    assert rerun.exit_code == 0, rerun.output
    assert names(out) == {"masks.jsonl", "overlay.mp4", "report.html", "results.json", "notes.txt"}
    record = json.loads((out / MANIFEST_NAME).read_text())
    assert record["command"] == "track" and "notes.txt" not in record["outputs"]
    assert set(record["outputs"]) == names(out) - {"notes.txt"}


def test_claims_refuse_what_no_record_names(tmp_path):
    (tmp_path / "a").write_text("mine")
    with pytest.raises(ValueError, match="was not made by an earlier persam-video run"):
        claim_outputs(tmp_path, "track", ["a", "b"])
    claim = claim_outputs(tmp_path, "track", ["b"])
    assert isinstance(claim, OutputClaim) and claim.owned == frozenset()
    (tmp_path / "b").write_text("ours")
    claim.record()
    assert claim_outputs(tmp_path, "track", ["b"]).owned == {"b"}
    with pytest.raises(ValueError, match="holds the outputs of a `persam-video track` run"):
        claim_outputs(tmp_path, "segment", ["b"])


@pytest.mark.slow  # the demo clip is tracked twice
def test_demo_claims_its_clip_and_metrics_as_well(tmp_path, fake_model):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "input.mp4").write_text("mine")
    refused_in_one_line(invoke("demo", "--out", str(out), "-q"), "input.mp4 was not made by")
    assert (out / "input.mp4").read_text() == "mine"
    (out / "input.mp4").unlink()
    for _ in range(2):  # a rerun replaces its own files
        result = invoke("demo", "--out", str(out), "-q")
        assert result.exit_code == 0, result.output
    record = json.loads((out / MANIFEST_NAME).read_text())
    assert record["command"] == "demo"
    assert {"input.mp4", "first_mask.png", "metrics.json", "results.json"} <= set(record["outputs"])
    assert set(record["outputs"]) == names(out)


# --------------------------------------------------------------------------- inputs
def test_out_equal_to_or_inside_an_input_folder_is_refused_on_every_run(tmp_path, fake_model):
    frames, mask = small_frames(tmp_path, 3)
    before = snapshot(frames)
    for out in (frames, frames / "out", frames, frames / "out"):
        refused_in_one_line(track(frames, mask, out), "would overwrite the input")
    assert snapshot(frames) == before and {p.name for p in frames.iterdir()} == {
        "0.png",
        "1.png",
        "2.png",
    }


def test_eval_and_davis_reports_may_not_be_written_over_their_inputs(tmp_path, clip, fake_model):
    video, mask = clip
    res = tmp_path / "res"
    assert track(video, mask, res).exit_code == 0
    ann = tmp_path / "ann"
    shutil.copytree(res / "masks", ann)
    for args in (
        ["--json", str(ann / "00000.png")],
        ["--csv", str(res / "masks" / "00001.png")],
        ["--csv", str(ann / "00002.png")],
    ):
        before = snapshot(ann), snapshot(res)
        result = invoke("eval", "--annotations", str(ann), "--results", str(res), "-q", *args)
        refused_in_one_line(result, "would overwrite the input")
        assert (snapshot(ann), snapshot(res)) == before
    report = tmp_path / "report.json"  # beside the inputs: fine
    ok = invoke(
        "eval", "--annotations", str(ann), "--results", str(res), "-q", "--json", str(report)
    )
    assert ok.exit_code == 0, ok.output
    assert report.is_file()
    root = tmp_path / "davis"
    write_davis(root, [1000])
    seq = next((root / "Annotations" / "480p").iterdir())
    before = snapshot(root)
    result = invoke(
        "davis",
        "--davis-root",
        str(root),
        "--out",
        str(tmp_path / "d"),
        "-q",
        "--json",
        str(seq / "00003.png"),
    )
    refused_in_one_line(result, "would overwrite the input")
    assert snapshot(root) == before and not (tmp_path / "d").exists()


# --------------------------------------------------------------------------- another command
def test_a_folder_holding_another_commands_run_is_refused(tmp_path, clip, fake_model):
    video, mask = clip
    out = tmp_path / "out"
    assert track(video, mask, out).exit_code == 0
    before = snapshot(out)
    album = tmp_path / "album"
    album.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(album / "a.png")
    target = tmp_path / "t.target"
    save_target(
        target, Target(torch.randn(32)), model={"model": "vit_b"}, config=PerSAMConfig(), shots=1
    )
    result = invoke("segment", str(album), "--target", str(target), "--out", str(out))
    refused_in_one_line(result, "holds the outputs of a `persam-video track` run")
    assert snapshot(out) == before
    seg = tmp_path / "seg"
    assert invoke("segment", str(album), "--target", str(target), "--out", str(seg)).exit_code == 0
    refused_in_one_line(track(video, mask, seg), "`persam-video segment` run")


# --------------------------------------------------------------------------- interrupted reruns
def test_an_interrupted_rerun_keeps_the_last_complete_run(tmp_path, clip, fake_model, monkeypatch):
    video, mask = clip
    out = tmp_path / "out"
    assert track(video, mask, out).exit_code == 0
    complete = snapshot(out)
    original = VideoTracker.step_features

    def interrupt_on_frame_3(self, *args, **kwargs):
        if kwargs["index"] == 3:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(VideoTracker, "step_features", interrupt_on_frame_3)
    stopped = track(video, mask, out)
    assert stopped.exit_code == 130 and "beside any earlier complete run" in stopped.output
    kept = {path: data for path, data in snapshot(out).items() if path in complete}
    assert kept == complete  # the complete run, byte for byte
    assert names(out) == COMPLETE | {
        "masks.partial",
        "overlay.partial.mp4",
        "report.partial.html",
        "results.partial.json",
    }
    doc = json.loads((out / "results.partial.json").read_text())
    assert doc["status"] == "interrupted"
    assert len(list((out / "masks.partial").iterdir())) == len(doc["frames"]) == 3
    assert not leftovers(out)
    monkeypatch.setattr(VideoTracker, "step_features", original)
    assert track(video, mask, out).exit_code == 0  # a complete rerun replaces both
    assert names(out) == COMPLETE


@pytest.mark.slow
def test_sigterm_over_a_complete_run_keeps_it(tmp_path):
    short = tmp_path / "short.mp4"
    make_video(short, n_frames=2, size_hw=(96, 128))
    first = tmp_path / "first.png"
    write_label_png(first, synthetic_labels(0, (96, 128)))
    out = tmp_path / "out"
    assert track(short, first, out, "--model", "demo").exit_code == 0
    complete = snapshot(out)
    process, _, _, out = start_long_track(tmp_path, frames_written=3, capture=True)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert {p: d for p, d in snapshot(out).items() if p in complete} == complete
    assert json.loads((out / "results.partial.json").read_text())["status"] == "interrupted"
    assert json.loads((out / "results.json").read_text())["status"] == "complete"


# --------------------------------------------------------------------------- the app
def test_the_app_refuses_a_pipe_without_opening_it(tmp_path):
    from persam_video.apps.app_state import AppError, AppSession, AppSettings, ModelHolder

    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    session = AppSession(ModelHolder(AppSettings(model_name="demo")), tmp_path / "session")
    outcome: list[BaseException] = []

    def open_it() -> None:
        try:
            session.open_path(str(fifo))
        except BaseException as exc:  # handed to the test's thread
            outcome.append(exc)

    worker = threading.Thread(target=open_it, daemon=True)
    worker.start()
    worker.join(timeout=30)
    if worker.is_alive():  # unblock the open so the thread can end, then fail
        with open(fifo, "w"):
            pass
        pytest.fail("opening a named pipe blocked")
    assert len(outcome) == 1 and isinstance(outcome[0], AppError)
    assert "is not a video file or a folder of frames" in str(outcome[0])


def test_opening_a_video_waits_for_no_other_session():
    pytest.importorskip("gradio")
    from persam_video.apps.app_state import AppSessions, AppSettings, ModelHolder
    from persam_video.apps.webapp import build_app

    sessions = AppSessions(ModelHolder(AppSettings(model_name="demo")))
    try:
        app = build_app(sessions)
        opens = [fn for fn in app.fns.values() if fn.name in ("on_open_path", "on_upload")]
        assert len(opens) == 3  # the upload, the button and the path's Enter
        assert all(fn.concurrency_limit is None for fn in opens)
        tracks = [fn for fn in app.fns.values() if fn.name == "on_track"]
        assert tracks and tracks[0].concurrency_limit != 0  # the model's queue is left as it was
    finally:
        sessions.close()


def test_a_killed_apps_folder_is_removed_by_the_next_start(tmp_path, monkeypatch):
    import tempfile

    from persam_video.apps.app_state import APP_FOLDER_PREFIX, app_folder

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    killed = make_marked_folder(tmp_path, APP_FOLDER_PREFIX)
    mark_as(killed, dead_pid())
    (killed / "uploads").mkdir()
    (killed / "uploads" / "0001-clip.mp4").write_bytes(b"x")
    running = make_marked_folder(tmp_path, APP_FOLDER_PREFIX)
    mark_as(running, os.getppid())
    users = tmp_path / f"{APP_FOLDER_PREFIX}mine"  # the name without the marker
    users.mkdir()
    fresh = app_folder()
    assert not killed.exists() and running.is_dir() and users.is_dir()
    assert fresh.parent == tmp_path and marker_pid(fresh) == os.getpid()


def test_a_busy_port_is_one_line(fake_model):
    pytest.importorskip("gradio")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = invoke("app", "--port", str(port), "--host", "127.0.0.1", "-q")
    refused_in_one_line(result, f"cannot listen on 127.0.0.1:{port}", "--port")


def test_a_marker_left_empty_by_a_killed_process_is_swept_only_when_its_process_is_gone(
    tmp_path,
):
    """A process killed between creating its staging folder's marker and writing it leaves an
    empty marker: the id in the folder's name stands for it. Such a folder is removed once that
    process is gone, and only when it holds nothing else and is the 0700 folder we made."""
    from persam_video.atomic import STAGING_PREFIX, remove_stale_temporaries

    pid = dead_pid()

    def unwritten(owner: int, name: str) -> Path:
        folder = make_marked_folder(tmp_path, STAGING_PREFIX)
        (folder / MARKER_NAME).write_bytes(b"")
        return folder.rename(tmp_path / f"{STAGING_PREFIX}{owner}-{name}")

    killed = unwritten(pid, "a")
    running = unwritten(os.getppid(), "b")
    with_more = unwritten(pid, "c")
    (with_more / "notes.txt").write_text("mine")
    opened_up = unwritten(pid, "d")
    opened_up.chmod(0o755)
    no_id = unwritten(pid, "e").rename(tmp_path / f"{STAGING_PREFIX}e")
    assert make_marked_folder(tmp_path, STAGING_PREFIX).name.startswith(
        f"{STAGING_PREFIX}{os.getpid()}-"
    )
    removed = remove_stale_temporaries(tmp_path)
    assert removed == [killed]
    assert all(p.exists() for p in (running, with_more, opened_up, no_id))
