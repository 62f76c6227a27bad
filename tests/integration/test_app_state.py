"""The web app's handlers as plain functions (``persam_video.apps.app_state``), with the demo
model: clicks and boxes to masks, tracking into the files ``track`` writes for the same prompts,
corrections, cancel, exports, and every error the page must show instead of failing."""

from __future__ import annotations

import itertools
import json
import shlex
import threading
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from safetensors import safe_open

from persam_video.apps.app_state import (
    BOX,
    COMMAND_OUT,
    MASKS_ZIP_NAME,
    NEGATIVE,
    POSITIVE,
    AppError,
    AppSession,
    AppSessions,
    AppSettings,
    Cancelled,
    ModelHolder,
)
from persam_video.cli import cli
from tests.video_factory import make_video, synthetic_labels

SIZE = (72, 96)
N_FRAMES = 12
LATER = 7


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("app") / "clip.mp4"
    make_video(path, n_frames=N_FRAMES, size_hw=SIZE)
    return path


@pytest.fixture(scope="module")
def models() -> ModelHolder:
    return ModelHolder(AppSettings(model_name="demo"))


@pytest.fixture
def session(tmp_path, models) -> AppSession:
    made = AppSession(models, tmp_path / "session")
    yield made
    made.close()


def centre_of(obj_id: int, frame: int) -> tuple[float, float]:
    ys, xs = np.nonzero(synthetic_labels(frame, SIZE) == obj_id)
    return float(xs.mean()), float(ys.mean())


def box_corners(obj_id: int, frame: int) -> tuple[tuple[int, int], tuple[int, int]]:
    ys, xs = np.nonzero(synthetic_labels(frame, SIZE) == obj_id)
    return (int(xs.max()), int(ys.max())), (int(xs.min()), int(ys.min()))


def run_cli(command: str, out: Path, *extra: str) -> None:
    """The page's equivalent command line, into ``out``."""
    words = shlex.split(command)
    assert words[:2] == ["persam-video", "track"]
    words[words.index("--out") + 1] = str(out)
    result = CliRunner().invoke(cli, [*words[1:], "-q", *extra])
    assert result.exit_code == 0, result.output


def contents(path: Path) -> tuple[dict[str, str], dict[str, list[float]]]:
    """A safetensors file's metadata and tensors."""
    with safe_open(str(path), framework="pt") as f:
        return f.metadata(), {k: f.get_tensor(k).tolist() for k in f.keys()}


def png_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def test_a_click_makes_the_mask_track_makes_of_it(tmp_path, session, video):
    session.open_path(str(video))
    said = session.click(0, 1, POSITIVE, *centre_of(1, 0))
    assert said.startswith("object 1 on frame 0:") and "pixels" in said
    mask = session.mask(0, 1)
    truth = synthetic_labels(0, SIZE) == 1
    assert (mask & truth).sum() / (mask | truth).sum() > 0.5
    # The view shows it: the mask's colour over the frame, beside an unchanged background.
    view, rgb = session.view(0), session.rgb(0)
    assert view.shape == (*SIZE, 3)
    assert (view[mask] != rgb[mask]).any(axis=-1).mean() > 0.9
    near = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    far = ~near & (synthetic_labels(0, SIZE) == 0)
    far[:24, :32] = False  # the legend
    assert (view[far] == rgb[far]).all()
    # `track --save-prompt-masks` makes the same mask of the same click.
    out = tmp_path / "cli"
    run_cli(session.command(), out, "--save-prompt-masks", "--no-overlay", "--no-report")
    prompt_png = np.asarray(Image.open(out / "prompt_masks" / "00000.png"))
    assert np.array_equal(prompt_png == 1, mask)


@pytest.mark.slow
def test_tracking_writes_what_track_writes_and_corrections_retrack(tmp_path, session, video):
    session.open_path(str(video))
    session.click(0, 1, POSITIVE, *centre_of(1, 0))
    first, second = box_corners(2, LATER)
    assert "first corner" in session.click(LATER, 2, BOX, *first)
    session.click(LATER, 2, BOX, *second)
    assert [s.kind for s in session.specs()] == ["point", "box"]
    seen = []
    run = session.track(masked_video="cutout", on_progress=lambda f, what: seen.append((f, what)))
    assert run.summary.frames == N_FRAMES and run.summary.object_ids == [1, 2]
    assert seen and seen[-1] == (1.0, "writing the videos")
    assert all(b[0] >= a[0] for a, b in itertools.pairwise(seen))
    names = {p.name for p in run.downloads()}
    assert names == {MASKS_ZIP_NAME, "overlay.mp4", "masked.mp4", "results.json", "report.html"}
    # The masks zip holds exactly the masks/ PNGs `track` writes for the same prompts.
    command = session.command(masked_video="cutout")
    assert f"--out {COMMAND_OUT}" in command and "--masked-video cutout" in command
    out = tmp_path / "cli"
    run_cli(command, out)
    with zipfile.ZipFile(run.masks_zip) as archive:
        zipped = {Path(n).name: archive.read(n) for n in archive.namelist()}
        assert all(n.startswith("masks/") for n in archive.namelist())
    assert zipped == png_bytes(out / "masks") == png_bytes(run.folder / "masks")
    ours = json.loads(run.results.read_text())
    theirs = json.loads((out / "results.json").read_text())
    assert ours["prompts"] == theirs["prompts"] and ours["frames"] == theirs["frames"]
    assert sorted(p.name for p in run.folder.iterdir()) == sorted(p.name for p in out.iterdir())
    # Scrubbing shows the tracked masks.
    tracked = np.asarray(Image.open(out / "masks" / f"{N_FRAMES - 1:05d}.png"))
    assert np.array_equal(run.labels(N_FRAMES - 1), tracked)
    assert (session.view(N_FRAMES - 1) != session.rgb(N_FRAMES - 1)).any()
    # A correction on a later frame, then tracking again: a new run replaces the old one.
    old = run.folder
    session.click(LATER + 2, 1, POSITIVE, *centre_of(1, LATER + 2))
    again = session.track()
    assert not old.exists() and again.folder != old
    doc = json.loads(again.results.read_text())
    assert doc["annotated_frames"] == [0, LATER, LATER + 2]
    assert doc["frames"][LATER + 2]["objects"]["1"]["annotated"]


def test_cancel_stops_tracking_and_leaves_the_session_usable(session, video):
    session.open_path(str(video))
    session.click(0, 1, POSITIVE, *centre_of(1, 0))
    steps = []

    def cancel_at_third(fraction, what):
        steps.append(fraction)
        if len(steps) == 3:
            assert session.cancel()

    with pytest.raises(Cancelled):
        session.track(on_progress=cancel_at_third)
    assert len(steps) == 3  # stopped at the next frame
    assert session.run is None
    assert not any((session.folder / "runs").iterdir())  # nothing of the run is left
    assert not session.cancel()  # nothing running any more
    assert len(session.clicks) == 1
    assert session.track().summary.frames == N_FRAMES


def test_a_click_during_tracking_is_refused(session, video):
    session.open_path(str(video))
    session.click(0, 1, POSITIVE, *centre_of(1, 0))
    started, release = threading.Event(), threading.Event()
    errors = []

    def slow(fraction, what):
        started.set()
        release.wait(30)

    worker = threading.Thread(target=lambda: session.track(on_progress=slow))
    worker.start()
    try:
        assert started.wait(60)
        with pytest.raises(AppError, match="tracking is running"):
            session.click(0, 2, POSITIVE, *centre_of(2, 0))
        with pytest.raises(AppError, match="tracking is running"):
            session.open_path("/nonexistent.mp4")
        assert session.view(3).shape == (*SIZE, 3)  # scrubbing still works
    except BaseException as exc:
        errors.append(exc)
    finally:
        release.set()
        worker.join(120)
    assert not errors, errors
    assert session.run is not None


def test_prompt_errors_are_one_line_and_change_nothing(session, video):
    with pytest.raises(AppError, match="open a video first"):
        session.click(0, 1, POSITIVE, 10, 10)
    with pytest.raises(AppError, match="open a video first"):
        session.view(0)
    with pytest.raises(AppError, match="nothing to track|open a video first"):
        session.track()
    session.open_path(str(video))
    with pytest.raises(AppError, match="nothing to track"):
        session.track()
    with pytest.raises(AppError, match="needs a positive click or a box"):
        session.click(0, 1, NEGATIVE, *centre_of(1, 0))
    assert session.clicks == []
    with pytest.raises(AppError, match="outside the 96x72 frame"):
        session.click(0, 1, POSITIVE, 96, 10)
    with pytest.raises(AppError, match="not in the video, which has 12 frames"):
        session.click(N_FRAMES, 1, POSITIVE, 10, 10)
    with pytest.raises(AppError, match="object id 0 is not in 1..254"):
        session.click(0, 0, POSITIVE, 10, 10)
    with pytest.raises(AppError, match="unknown click mode"):
        session.click(0, 1, "lasso", 10, 10)
    session.click(0, 1, POSITIVE, *centre_of(1, 0))
    before = session.mask(0, 1).copy()
    session.click(0, 1, NEGATIVE, 80, 60)  # a negative click far away keeps the object
    assert session.mask(0, 1) is not None
    assert session.undo(0, 1).startswith("object 1 on frame 0")
    assert np.array_equal(session.mask(0, 1), before)
    with pytest.raises(AppError, match="object 2 has no prompt on frame 0"):
        session.undo(0, 2)
    session.clear(0, 1)
    assert session.clicks == [] and session.mask(0, 1) is None
    assert session.next_object_id() == 1


def test_a_second_box_replaces_the_first(session, video):
    session.open_path(str(video))
    session.click(0, 2, BOX, 0, 0)
    session.click(0, 2, BOX, 95, 71)
    first, second = box_corners(2, 0)
    session.click(0, 2, BOX, *first)
    session.click(0, 2, BOX, *second)
    boxes = [s.values for s in session.clicks if s.kind == "box"]
    x0, y0 = second
    x1, y1 = first
    assert boxes == [(x0, y0, x1 + 1, y1 + 1)]
    assert "--box 2=" in session.command()


def test_opening_errors_and_the_upload_limit(tmp_path, models, video):
    small = ModelHolder(AppSettings(model_name="demo", max_upload_mb=0.001))
    session = AppSession(small, tmp_path / "s")
    try:
        big = tmp_path / "big.mp4"
        big.write_bytes(b"\0" * 4096)
        with pytest.raises(AppError, match=r"big.mp4 is 0.0 MiB, over the upload limit of 0.001"):
            session.open_upload(big, name="big.mp4")
        assert not big.exists()  # an upload over the limit is not kept
    finally:
        session.close()
    session = AppSession(models, tmp_path / "t")
    try:
        text = tmp_path / "notes.txt"
        text.write_text("not a video\n")
        with pytest.raises(AppError, match="notes.txt cannot be read as a video"):
            session.open_upload(text, name="notes.txt")
        assert not any((session.folder / "uploads").iterdir())
        with pytest.raises(AppError, match="does not exist"):
            session.open_path(str(tmp_path / "missing.mp4"))
        with pytest.raises(AppError, match="type the path"):
            session.open_path("  ")
        copy = tmp_path / "upload.mp4"
        copy.write_bytes(video.read_bytes())
        info = session.open_upload(copy, name="my clip.mp4")
        assert info.num_frames == N_FRAMES and info.size == SIZE
        assert session.command().startswith("persam-video track 'my clip.mp4' --out")
        assert info.path.parent == session.folder / "uploads"
    finally:
        session.close()
    assert not (tmp_path / "t").exists()


def test_a_model_that_cannot_be_loaded_is_a_message_and_is_tried_again(tmp_path, models, video):
    calls = []

    def flaky(settings):
        calls.append(settings.model_name)
        if len(calls) == 1:
            raise OSError("no network to download vit_b\nsecond line")
        return models.get()

    session = AppSession(ModelHolder(AppSettings(model_name="vit_b"), loader=flaky), tmp_path)
    try:
        session.open_path(str(video))
        with pytest.raises(
            AppError,
            match=r"^cannot load the model 'vit_b': no network to "
            r"download vit_b$",
        ):
            session.click(0, 1, POSITIVE, *centre_of(1, 0))
        assert session.clicks == []
        session.click(0, 1, POSITIVE, *centre_of(1, 0))
        assert calls == ["vit_b", "vit_b"]
    finally:
        session.close()
    missing = ModelHolder(AppSettings(model_name="vit_b", checkpoint=str(tmp_path / "no.pth")))
    with pytest.raises(AppError, match="cannot load the model 'vit_b': checkpoint file .* does "):
        missing.get()


def test_the_target_file_is_what_personalize_saves(tmp_path, session, video):
    session.open_path(str(video))
    session.click(0, 1, POSITIVE, *centre_of(1, 0))
    with pytest.raises(AppError, match="object 2 has no prompt"):
        session.save_target(2)
    saved = session.save_target(1)
    assert saved.suffix == ".target"
    out = tmp_path / "cli"
    run_cli(session.command(), out, "--save-prompt-masks", "--no-overlay", "--no-report")
    frame_png = tmp_path / "frame0.png"
    runner = CliRunner()
    assert runner.invoke(cli, ["frame", str(video), "0", "-o", str(frame_png)]).exit_code == 0
    target = tmp_path / "cli.target"
    result = runner.invoke(
        cli,
        [
            "personalize",
            str(frame_png),
            "--mask",
            str(out / "prompt_masks" / "00000.png"),
            "--object",
            "1",
            "--model",
            "demo",
            "-o",
            str(target),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    # The same tensors and metadata (not the same bytes: safetensors writes the metadata keys
    # in an order of its own, which differs between two writes of one target).
    assert contents(saved) == contents(target)
    # A saved target is found again by `track --target`.
    found = tmp_path / "found"
    result = runner.invoke(
        cli,
        [
            "track",
            str(video),
            "--target",
            str(saved),
            "--out",
            str(found),
            "-q",
            "--no-overlay",
            "--no-report",
        ],
    )
    assert result.exit_code == 0, result.output


def test_sessions_live_in_one_folder_removed_at_the_end(models, video):
    sessions = AppSessions(models)
    one, two = sessions.get("a"), sessions.get("b")
    assert sessions.get("a") is one and len(sessions) == 2
    assert one.folder.parent == two.folder.parent == sessions.root
    one.open_path(str(video))
    sessions.drop("a")
    assert not one.folder.exists() and two.folder.exists()
    sessions.close()
    assert not sessions.root.exists()


def test_the_command_names_config_direction_and_masked_video(tmp_path, video):
    settings = AppSettings(
        model_name="vit_b",
        checkpoint="/m/sam b.pth",
        config_args=("--config", "fast", "--set", "track.momentum=0.8"),
    )
    session = AppSession(ModelHolder(settings), tmp_path)
    assert session.command("backward", "alpha") == (
        "persam-video track VIDEO --out results/ --model vit_b --checkpoint '/m/sam b.pth' "
        "--config fast --set track.momentum=0.8 --direction backward --masked-video alpha"
    )
    session.open_path(str(video))
    with pytest.raises(AppError, match="unknown direction"):
        session.track("sideways")
    with pytest.raises(AppError, match="unknown masked video"):
        session.track("both", "sepia")
    session.close()
