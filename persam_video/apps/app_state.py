"""The web app's logic, without the web: plain classes the Gradio page calls (and tests drive).

One :class:`AppSession` per browser session holds the video, the prompts the user clicked (as the
:class:`~persam_video.apps.prompted.PromptSpec` values the command line makes of ``--point``,
``--neg-point`` and ``--box``), SAM's mask of each (frame, object) prompt, and the latest run.
Tracking calls :func:`~persam_video.apps.prompted.track_prompts_to_folder` with those specs, in
the order ``track`` parses them, into a folder of the session: the masks, videos, report and
results.json are the files ``persam-video track`` writes for the same prompts
(:meth:`AppSession.command` is that command line).

:class:`AppSessions` keeps every session's files under one temporary folder, removed when the
app stops (and a session's own folder when its tab closes). :class:`ModelHolder` loads the model
once, on first use, so that a model that cannot be loaded is a message in the page, not a dead
server. Every error meant for the user is an :class:`AppError` with one line.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from persam_video.apps.engines import EngineConfig
from persam_video.apps.prompted import TRACK_STAGE, PromptSpec, track_prompts_to_folder
from persam_video.apps.target_file import TARGET_SUFFIX, save_target
from persam_video.apps.track import (
    MASKED_NAMES,
    MASKS_DIR,
    OVERLAY_NAME,
    RESULTS_NAME,
    OutputOptions,
    RunStatus,
    TrackSummary,
    report_name,
)
from persam_video.apps.visualize import line_width, overlay
from persam_video.atomic import make_marked_folder, remove_stale_marked
from persam_video.config import PerSAMConfig
from persam_video.io.mask_formats import MASK_NAME_FORMAT
from persam_video.io.seekable import SeekableFrames, open_seekable
from persam_video.labels import MAX_OBJECTS, check_object_id
from persam_video.memory.config import MemoryConfig
from persam_video.memory.engine import MemoryEngine
from persam_video.memory.targets import personalize as personalize_memory
from persam_video.model.demo import DEMO_MODEL_NAME
from persam_video.persam.prompts import NEGATIVE_CLICK, POSITIVE_CLICK, PromptError, prompt_mask
from persam_video.video import VideoTracker
from persam_video.video.session import DIRECTIONS

#: Upload limit when none is given (``persam-video app --max-upload-mb``), in MiB.
#: What tracks in the app: PerSAM's tracker or the memory engine.
AppTracker = VideoTracker | MemoryEngine

DEFAULT_MAX_UPLOAD_MB = 500.0
BYTES_PER_MB = 1024 * 1024
#: What a click on the frame does.
POSITIVE, NEGATIVE, BOX = "positive click", "negative click", "box (two corners)"
CLICK_MODES: tuple[str, ...] = (POSITIVE, NEGATIVE, BOX)
#: The masked-video choices (``--masked-video``).
MASKED_CHOICES: tuple[str, ...] = ("none", "cutout", "blur", "alpha")
#: How long a new run waits for a cancelled one to stop, in seconds.
CANCEL_WAIT_S = 30.0
#: The frame view is scaled up by a whole factor (each pixel a square block) until its longer
#: side has at least this many pixels, so that small frames are easy to click.
VIEW_MIN_LONG_SIDE_PX = 480
#: The first corner of a box being drawn, and a box, on the frame view.
CORNER_RGB = (255, 255, 0)
#: Sub-folders of a session's folder.
UPLOADS_DIR, RUNS_DIR, DOWNLOADS_DIR, TARGETS_DIR = "uploads", "runs", "downloads", "targets"
#: The masks download: a zip of ``masks/NNNNN.png``.
MASKS_ZIP_NAME = "masks.zip"
#: Timestamp of every member of the masks zip (the zip then depends on the masks alone).
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
#: The output folder the equivalent command line names.
COMMAND_OUT = "results/"
#: The spec kind of each click mode, and the order ``track`` parses prompt options in.
KIND_OF_MODE = {POSITIVE: "point", NEGATIVE: "neg-point", BOX: "box"}
CLI_KIND_ORDER = ("mask", "point", "neg-point", "box")


class AppError(ValueError):
    """A problem to show the user in the page, in one line."""


class Cancelled(Exception):
    """Tracking was cancelled from the page."""


@dataclass(frozen=True)
class AppSettings:
    """What ``persam-video app`` was started with."""

    model_name: str = "demo"
    checkpoint: str | None = None
    device: str = "auto"
    #: PerSAM's config, or the memory engine's settings for a memory tracker.
    config: EngineConfig = field(default_factory=PerSAMConfig.default)
    #: Largest upload accepted, in MiB.
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    #: torch threads (recorded in results.json, as ``track`` does), or None.
    threads: int | None = None
    #: The config options as given (``--config NAME``, ``--set K=V``), for the equivalent
    #: command line.
    config_args: tuple[str, ...] = ()

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * BYTES_PER_MB)

    def describe_model(self) -> str:
        """The model line of the page."""
        if self.model_name == DEMO_MODEL_NAME:
            return (
                "Model: demo (the bundled demo model, trained on generated shapes; it is not SAM: "
                "start the app with --model vit_b for real videos)."
            )
        where = f", checkpoint {self.checkpoint}" if self.checkpoint else ""
        return f"Model: {self.model_name}{where} (loaded on first use)."


@dataclass(frozen=True)
class VideoInfo:
    """The opened video, as the page shows it."""

    path: Path
    #: Name shown (the uploaded file's own name, not its temporary copy's).
    name: str
    size: tuple[int, int]
    num_frames: int
    fps: Any
    #: The path the equivalent command line names: the path typed, or the uploaded file's name.
    shown_path: str = ""

    def describe(self) -> str:
        height, width = self.size
        rate = f", {float(self.fps):.3g} frames/s" if self.fps else ""
        return f"{self.name}: {width}x{height}, {self.num_frames} frames{rate}"


@dataclass(frozen=True)
class RunOutputs:
    """A finished tracking run: the folder ``track`` would write and the downloads made of it."""

    folder: Path
    summary: TrackSummary
    masks_zip: Path

    @property
    def overlay(self) -> Path | None:
        path = self.folder / OVERLAY_NAME
        return path if path.is_file() else None

    @property
    def masked(self) -> Path | None:
        for name in sorted(set(MASKED_NAMES.values())):
            if (self.folder / name).is_file():
                return self.folder / name
        return None

    @property
    def results(self) -> Path:
        return self.folder / RESULTS_NAME

    @property
    def report(self) -> Path | None:
        path = self.folder / report_name(RunStatus.COMPLETE)
        return path if path.is_file() else None

    def downloads(self) -> list[Path]:
        """Every file offered: masks.zip, overlay, masked video, results.json, report."""
        found = [self.masks_zip, self.overlay, self.masked, self.results, self.report]
        return [p for p in found if p is not None]

    def labels(self, frame: int) -> np.ndarray | None:
        """The tracked (H, W) label map of ``frame``, or None."""
        path = self.folder / MASKS_DIR / MASK_NAME_FORMAT.format(frame)
        if not path.is_file():
            return None
        with Image.open(path) as image:
            return np.asarray(image, dtype=np.uint8).copy()


def _default_loader(settings: AppSettings) -> tuple[VideoTracker | MemoryEngine, dict[str, Any]]:
    """The tracker of ``settings``' model (PerSAM's :class:`VideoTracker`, or the memory
    engine of a memory tracker) and the model's metadata (as ``track`` builds them)."""
    from persam_video.apps.engines import load_engine_model
    from persam_video.persam.encoder import FrameEncoder

    model = load_engine_model(settings.model_name, settings.checkpoint, settings.device)
    metadata = dict(model.metadata)
    tracker: VideoTracker | MemoryEngine
    if model.memory is not None:
        tracker = MemoryEngine(model.memory, _memory_config(settings.config))
    else:
        tracker = VideoTracker(model.sam, settings.config, FrameEncoder(model.sam), progress=False)
    if settings.threads is not None:
        metadata["threads"] = settings.threads
    return tracker, metadata


def _memory_config(config: EngineConfig) -> MemoryConfig:
    if not isinstance(config, MemoryConfig):
        raise AppError("a memory tracker runs with the memory engine's settings (memory.*)")
    return config


class ModelHolder:
    """The model of :class:`AppSettings`, loaded once on first use and shared by the sessions.

    A failure (a missing checkpoint, no network for a download, no CUDA) is an
    :class:`AppError` each time the model is needed, and loading is tried again the next time.
    """

    def __init__(
        self,
        settings: AppSettings,
        loader: Callable[[AppSettings], tuple[AppTracker, dict[str, Any]]] | None = None,
    ) -> None:
        self.settings = settings
        self._loader = loader or _default_loader
        self._lock = threading.Lock()
        self._loaded: tuple[AppTracker, dict[str, Any]] | None = None

    def get(self) -> tuple[AppTracker, dict[str, Any]]:
        """(tracker, model metadata)."""
        with self._lock:
            if self._loaded is None:
                try:
                    self._loaded = self._loader(self.settings)
                except Exception as exc:  # any failure: said in the page, tried again next time
                    text = str(exc).strip().splitlines()
                    detail = text[0] if text else type(exc).__name__
                    raise AppError(
                        f"cannot load the model {self.settings.model_name!r}: {detail}"
                    ) from exc
            return self._loaded[0], dict(self._loaded[1])


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class AppSession:
    """One browser session: its video, prompts, masks and latest run (see the module).

    Methods that the page calls raise :class:`AppError` for anything the user should read.
    """

    def __init__(self, models: ModelHolder, folder: str | os.PathLike[str]) -> None:
        self.models = models
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.video: VideoInfo | None = None
        #: Every prompt in the order clicked (one spec per click or box).
        self.clicks: list[PromptSpec] = []
        self.run: RunOutputs | None = None
        self._frames: SeekableFrames | None = None
        self._masks: dict[tuple[int, int], np.ndarray] = {}  # (frame, object) -> SAM's mask
        self._scores: dict[tuple[int, int], float] = {}
        self._corner: tuple[int, int, float, float] | None = None  # frame, object, x, y
        self._features: tuple[int, Any] | None = None  # the last frame encoded
        self._read_lock = threading.Lock()  # the decoder is used by one thread at a time
        self._busy = threading.Lock()  # held by a tracking run
        self._cancel = threading.Event()
        self._runs = 0
        self._uploads = 0

    # ------------------------------------------------------------------ video
    def open_upload(self, path: str | os.PathLike[str], name: str | None = None) -> VideoInfo:
        """Open an uploaded file (moved into the session's folder), within the size limit."""
        source = Path(path)
        if not source.is_file():
            raise AppError("the upload did not arrive; try again")
        if self._busy.locked():
            source.unlink(missing_ok=True)
            self._check_idle()
        limit = self.models.settings.max_upload_mb
        size = source.stat().st_size
        if size > self.models.settings.max_upload_bytes:
            source.unlink(missing_ok=True)
            raise AppError(
                f"{name or source.name} is {size / BYTES_PER_MB:.1f} MiB, over the upload limit "
                f"of {limit:g} MiB (persam-video app --max-upload-mb)"
            )
        uploads = self.folder / UPLOADS_DIR
        uploads.mkdir(exist_ok=True)
        self._uploads += 1
        kept = uploads / f"{self._uploads:04d}-{Path(name or source.name).name}"
        shutil.move(str(source), kept)
        try:
            return self.open_video(
                kept, name=name or source.name, shown=Path(name or source.name).name
            )
        except AppError:
            kept.unlink(missing_ok=True)
            raise

    def open_path(self, text: str) -> VideoInfo:
        """Open a video file or a folder of frames named by a path on this machine."""
        self._check_idle()
        cleaned = (text or "").strip()
        if not cleaned:
            raise AppError("type the path of a video file or of a folder of frames")
        path = Path(cleaned).expanduser()
        if not path.exists():
            raise AppError(f"{path} does not exist")
        if not (path.is_file() or path.is_dir()):  # a pipe or a device would block the open
            raise AppError(f"{path} is not a video file or a folder of frames")
        return self.open_video(path, name=str(path))

    def open_video(self, path: Path, name: str, shown: str | None = None) -> VideoInfo:
        """Open ``path`` for random access; its first frame must decode. Clears the prompts and
        the results of the previous video. ``shown`` is the path the equivalent command line
        names (default ``path``)."""
        self._check_idle()
        try:
            frames = open_seekable(path)
            try:
                frames.read(0)
            except BaseException:
                frames.close()
                raise
        except (ValueError, OSError) as exc:
            raise AppError(f"{name} cannot be read as a video: {_one_line(exc)}") from None
        self.close_video()
        self._frames = frames
        count = frames.num_frames if frames.num_frames is not None else 1
        self.video = VideoInfo(
            path,
            Path(name).name,
            frames.size,
            count,
            frames.fps,
            shown_path=shown if shown is not None else str(path),
        )
        return self.video

    def close_video(self) -> None:
        """Forget the video, its prompts and its results (their files are removed)."""
        if self._frames is not None:
            self._frames.close()
        self._frames, self.video, self._features = None, None, None
        self.clicks, self._masks, self._scores, self._corner = [], {}, {}, None
        self._drop_run()

    def _drop_run(self) -> None:
        if self.run is not None:
            shutil.rmtree(self.run.folder, ignore_errors=True)
            shutil.rmtree(self.run.masks_zip.parent, ignore_errors=True)
        self.run = None

    def _require_video(self) -> SeekableFrames:
        if self._frames is None or self.video is None:
            raise AppError("open a video first (upload one, or type a path and press Open)")
        return self._frames

    def _check_idle(self) -> None:
        if self._busy.locked():
            raise AppError("tracking is running: wait for it, or press Cancel")

    def _check_frame(self, frame: int) -> int:
        self._require_video()
        assert self.video is not None
        if isinstance(frame, float) and frame.is_integer():
            frame = int(frame)
        if not isinstance(frame, int) or not 0 <= frame < self.video.num_frames:
            raise AppError(
                f"frame {frame!r} is not in the video, which has {self.video.num_frames} frames "
                f"(0..{self.video.num_frames - 1})"
            )
        return frame

    def rgb(self, frame: int) -> np.ndarray:
        """The (H, W, 3) uint8 RGB of ``frame``."""
        frames = self._require_video()
        frame = self._check_frame(frame)
        try:
            with self._read_lock:
                return frames.read(frame).rgb
        except ValueError as exc:
            raise AppError(_one_line(exc)) from None

    # ------------------------------------------------------------------ the frame view
    @property
    def view_scale(self) -> int:
        """The whole factor the frame view is scaled up by (see :data:`VIEW_MIN_LONG_SIDE_PX`)."""
        if self.video is None:
            return 1
        return max(1, VIEW_MIN_LONG_SIDE_PX // max(self.video.size))

    def shown(self, frame: int) -> np.ndarray:
        """:meth:`view` scaled up by :attr:`view_scale` (what the page shows)."""
        scale = self.view_scale
        return np.repeat(np.repeat(self.view(frame), scale, axis=0), scale, axis=1)

    def click_shown(self, frame: int, obj_id: int, mode: str, x: int, y: int) -> str:
        """:meth:`click` at pixel (x, y) of :meth:`shown`'s image."""
        scale = self.view_scale
        return self.click(frame, obj_id, mode, x // scale, y // scale)

    def view(self, frame: int) -> np.ndarray:
        """``frame`` as the page shows it: the tracked masks of the latest run, SAM's masks of
        this frame's prompts over them, the clicks (green positive, red negative), the boxes
        and a box's first corner."""
        frame = self._check_frame(frame)
        rgb = self.rgb(frame)
        tracked = self.run.labels(frame) if self.run is not None else None
        labels = tracked.copy() if tracked is not None else np.zeros(rgb.shape[:2], np.uint8)
        for (where, obj_id), mask in sorted(self._masks.items()):
            if where == frame:
                labels[labels == obj_id] = 0
                labels[mask] = obj_id
        points = [
            (np.array([s.values], np.float64), np.array([_label_of(s)]))
            for s in self.clicks
            if s.frame == frame and s.kind != "box"
        ]
        ids = sorted(int(i) for i in np.unique(labels) if i)
        image = overlay(rgb, labels, points=points, legend=ids or None)
        width = line_width(labels.shape)
        for spec in self.clicks:
            if spec.frame == frame and spec.kind == "box":
                x0, y0, x1, y1 = (round(v) for v in spec.values)
                _rectangle(image, (x0, y0, x1, y1), width)
        if self._corner is not None and self._corner[0] == frame:
            x, y = round(self._corner[2]), round(self._corner[3])
            _rectangle(image, (x - 2 * width, y - 2 * width, x + 2 * width, y + 2 * width), width)
        return image

    # ------------------------------------------------------------------ prompts
    def click(self, frame: int, obj_id: int, mode: str, x: float, y: float) -> str:
        """A click at pixel (x, y) of ``frame`` for object ``obj_id``: a positive or negative
        click, or a corner of a box (the second corner completes it, replacing the object's
        box on that frame). SAM makes the mask at once; returns a line saying what it made."""
        self._require_video()
        self._check_idle()
        frame = self._check_frame(frame)
        obj_id = self._check_object(obj_id)
        if mode not in CLICK_MODES:
            raise AppError(f"unknown click mode {mode!r}; use {', '.join(CLICK_MODES)}")
        assert self.video is not None
        height, width = self.video.size
        if not (0 <= x < width and 0 <= y < height):
            raise AppError(f"({x:g}, {y:g}) is outside the {width}x{height} frame")
        x, y = float(round(x)), float(round(y))
        if mode == BOX:
            corner = self._corner
            if corner is None or corner[:2] != (frame, obj_id):
                self._corner = (frame, obj_id, x, y)
                return f"box of object {obj_id}: first corner at ({x:g}, {y:g}); click the other"
            self._corner = None
            x0, x1 = sorted((corner[2], x))
            y0, y1 = sorted((corner[3], y))
            values: tuple[float, ...] = (x0, y0, x1 + 1, y1 + 1)  # both corner pixels inside
            old = [s for s in self.clicks if (s.frame, s.obj_id, s.kind) == (frame, obj_id, "box")]
        else:
            values, old = (x, y), []
        spec = _spec(KIND_OF_MODE[mode], frame, obj_id, values)
        before = list(self.clicks)
        self.clicks = [s for s in self.clicks if s not in old] + [spec]
        try:
            return self._remake(frame, obj_id)
        except AppError:
            self.clicks = before
            self._remake(frame, obj_id, quiet=True)
            raise

    def undo(self, frame: int, obj_id: int) -> str:
        """Remove the last click (or box) of object ``obj_id`` on ``frame``."""
        self._check_idle()
        frame, obj_id = self._check_frame(frame), self._check_object(obj_id)
        if self._corner is not None and self._corner[:2] == (frame, obj_id):
            self._corner = None
            return "box corner removed"
        mine = [i for i, s in enumerate(self.clicks) if (s.frame, s.obj_id) == (frame, obj_id)]
        if not mine:
            raise AppError(f"object {obj_id} has no prompt on frame {frame}")
        del self.clicks[mine[-1]]
        return self._remake(frame, obj_id, quiet=True) or (
            f"object {obj_id} has no prompt on frame {frame} any more"
        )

    def clear(self, frame: int, obj_id: int) -> str:
        """Remove every prompt of object ``obj_id`` on ``frame``."""
        self._check_idle()
        frame, obj_id = self._check_frame(frame), self._check_object(obj_id)
        self.clicks = [s for s in self.clicks if (s.frame, s.obj_id) != (frame, obj_id)]
        if self._corner is not None and self._corner[:2] == (frame, obj_id):
            self._corner = None
        self._remake(frame, obj_id, quiet=True)
        return f"prompts of object {obj_id} on frame {frame} cleared"

    def next_object_id(self) -> int:
        """The smallest id not prompted yet."""
        taken = {s.obj_id for s in self.clicks}
        free = [i for i in range(1, MAX_OBJECTS + 1) if i not in taken]
        if not free:
            raise AppError(f"every object id 1..{MAX_OBJECTS} is taken")
        return free[0]

    def _check_object(self, obj_id: Any) -> int:
        try:
            number = float(obj_id)
            if not number.is_integer():
                raise ValueError
            return check_object_id(int(number))
        except (TypeError, ValueError):
            raise AppError(
                f"object id {obj_id!r} is not in 1..{MAX_OBJECTS} (0 is the background, 255 is "
                "void)"
            ) from None

    def _remake(self, frame: int, obj_id: int, *, quiet: bool = False) -> str:
        """SAM's mask of the prompts of (frame, object), as ``track`` makes it."""
        key = (frame, obj_id)
        group = [s for s in self.specs() if (s.frame, s.obj_id) == key]
        self._masks.pop(key, None)
        self._scores.pop(key, None)
        if not group:
            return ""
        clicks = [s for s in group if s.kind != "box"]
        boxes = [s.values for s in group if s.kind == "box"]
        points = np.array([s.values for s in clicks], np.float64).reshape(-1, 2)
        labels = np.array([_label_of(s) for s in clicks], np.int64)
        tracker, _ = self.models.get()
        try:
            if isinstance(tracker, MemoryEngine):  # the tracker's mask of the frame alone
                made = tracker.open_session(self._require_video()).prompt_mask(
                    frame, points, labels, boxes[0] if boxes else None
                )
            else:
                made = prompt_mask(
                    tracker.sam,
                    self._encoded(tracker, frame),
                    points,
                    labels,
                    boxes[0] if boxes else None,
                )
        except PromptError as exc:
            if quiet:
                return ""
            raise AppError(f"object {obj_id} on frame {frame}: {exc}") from None
        if not made.mask.any():
            if quiet:
                return ""
            raise AppError(
                f"SAM makes an empty mask of object {obj_id} on frame {frame}: click inside the "
                "object or draw a box around it"
            )
        self._masks[key], self._scores[key] = made.mask, made.score
        return (
            f"object {obj_id} on frame {frame}: {int(made.mask.sum())} pixels "
            f"(SAM's score {made.score:.2f})"
        )

    def _encoded(self, tracker: VideoTracker, frame: int) -> Any:
        if self._features is None or self._features[0] != frame:
            self._features = (frame, tracker.persam.encode(self.rgb(frame)))
        return self._features[1]

    def mask(self, frame: int, obj_id: int) -> np.ndarray | None:
        """SAM's (H, W) bool mask of the prompts of object ``obj_id`` on ``frame``, or None."""
        return self._masks.get((frame, obj_id))

    def specs(self) -> list[PromptSpec]:
        """The prompts as ``track`` parses its options: points, then negative points, then
        boxes, each in the order clicked."""
        return sorted(self.clicks, key=lambda s: CLI_KIND_ORDER.index(s.kind))

    def command(self, direction: str = "both", masked_video: str = "none") -> str:
        """The ``persam-video track`` command line that writes the same files."""
        settings = self.models.settings
        video = self.video.shown_path if self.video is not None else "VIDEO"
        words = [
            "persam-video",
            "track",
            video,
            "--out",
            COMMAND_OUT,
            "--model",
            settings.model_name,
        ]
        if settings.checkpoint is not None:
            words += ["--checkpoint", settings.checkpoint]
        words += list(settings.config_args)
        if direction != "both":
            words += ["--direction", direction]
        if masked_video != "none":
            words += ["--masked-video", masked_video]
        for spec in self.specs():
            words += [spec.option, spec.text]
        return shlex.join(words)

    def prompted_objects(self) -> list[int]:
        """Ids with at least one prompt."""
        return sorted({s.obj_id for s in self.clicks})

    # ------------------------------------------------------------------ tracking
    def cancel(self) -> bool:
        """Ask a running track to stop (at its next frame); whether one was running."""
        running = self._busy.locked()
        if running:
            self._cancel.set()
        return running

    def track(
        self,
        direction: str = "both",
        masked_video: str = "none",
        on_progress: Callable[[float, str], None] | None = None,
    ) -> RunOutputs:
        """Track every prompted object through the video into a new run folder (the files
        ``track`` writes); the previous run's files are removed once it succeeds.

        Raises:
            Cancelled: :meth:`cancel` was called (nothing of this run is left; the previous run
                and the prompts stay).
            AppError: no prompt, a model that cannot be loaded, a run that stopped early.
        """
        self._require_video()
        if direction not in DIRECTIONS:
            raise AppError(f"unknown direction {direction!r}; use {', '.join(DIRECTIONS)}")
        if masked_video not in MASKED_CHOICES:
            raise AppError(
                f"unknown masked video {masked_video!r}; use {', '.join(MASKED_CHOICES)}"
            )
        if not self.clicks:
            raise AppError("nothing to track: click on an object (or draw a box) first")
        if not self._busy.acquire(timeout=CANCEL_WAIT_S):
            raise AppError("tracking is running: wait for it, or press Cancel")
        try:
            self._cancel.clear()
            return self._track_locked(direction, masked_video, on_progress)
        finally:
            self._cancel.clear()
            self._busy.release()

    def _track_locked(
        self, direction: str, masked_video: str, on_progress: Callable[[float, str], None] | None
    ) -> RunOutputs:
        assert self.video is not None
        tracker, metadata = self.models.get()
        self._runs += 1
        out = self.folder / RUNS_DIR / f"{self._runs:04d}"
        specs = self.specs()
        total = _expected_steps(specs, self.video.num_frames, direction)
        done = 0

        def hook(stage: str, index: int) -> None:
            nonlocal done
            if self._cancel.is_set():
                raise Cancelled()
            done += 1
            if on_progress is not None:
                what = "tracking" if stage == TRACK_STAGE else "writing the videos"
                on_progress(min(done / total, 1.0), what)

        try:
            summary = track_prompts_to_folder(
                tracker,
                self.video.path,
                specs,
                out,
                direction=direction,  # type: ignore[arg-type]
                options=OutputOptions(masked_video=masked_video),  # type: ignore[arg-type]
                progress=False,
                metadata=metadata,
                on_frame=hook,
            )
        except Cancelled:
            shutil.rmtree(out, ignore_errors=True)
            raise
        except (ValueError, OSError) as exc:
            shutil.rmtree(out, ignore_errors=True)
            raise AppError(_one_line(exc)) from None
        if summary.status != RunStatus.COMPLETE:
            shutil.rmtree(out, ignore_errors=True)
            raise AppError(f"tracking stopped early: {summary.error or summary.status}")
        downloads = self.folder / DOWNLOADS_DIR / out.name
        zipped = zip_masks(out / MASKS_DIR, downloads / MASKS_ZIP_NAME)
        self._drop_run()
        self.run = RunOutputs(out, summary, zipped)
        return self.run

    # ------------------------------------------------------------------ targets
    def save_target(self, obj_id: int) -> Path:
        """A ``.target`` file of object ``obj_id`` from its prompt masks (one shot per frame it
        is prompted on): what ``persam-video personalize`` saves for those frames and the
        prompt masks ``track --save-prompt-masks`` writes."""
        self._require_video()
        obj_id = self._check_object(obj_id)
        frames = sorted(f for f, i in self._masks if i == obj_id)
        if not frames:
            raise AppError(f"object {obj_id} has no prompt: click on it first")
        tracker, metadata = self.models.get()
        metadata.pop("threads", None)
        shots = [(self.rgb(f), self._masks[(f, obj_id)]) for f in frames]
        config: EngineConfig
        if isinstance(tracker, MemoryEngine):
            target, config = personalize_memory(tracker.model, shots), tracker.config
        else:
            target, config = tracker.persam.personalize_shots(shots), tracker.persam.config
        folder = self.folder / TARGETS_DIR
        folder.mkdir(exist_ok=True)
        path = folder / f"object-{obj_id}{TARGET_SUFFIX}"
        return save_target(path, target, model=metadata, config=config, shots=len(shots))

    # ------------------------------------------------------------------ end
    def close(self) -> None:
        """Stop a run, close the video and remove the session's folder."""
        self.cancel()
        if self._busy.acquire(timeout=CANCEL_WAIT_S):
            self._busy.release()
        self.close_video()
        shutil.rmtree(self.folder, ignore_errors=True)


def _label_of(spec: PromptSpec) -> int:
    return NEGATIVE_CLICK if spec.kind == "neg-point" else POSITIVE_CLICK


def _spec(kind: str, frame: int, obj_id: int, values: tuple[float, ...]) -> PromptSpec:
    """The spec ``track`` parses from ``--KIND ID=VALUES@FRAME``."""
    text = f"{obj_id}={','.join(f'{v:g}' for v in values)}@{frame}"
    return PromptSpec(kind, frame, obj_id, values, text=text)  # type: ignore[arg-type]


def _rectangle(image: np.ndarray, box: tuple[int, int, int, int], width: int) -> None:
    x0, y0, x1, y1 = box
    cv2.rectangle(image, (x0, y0), (x1 - 1, y1 - 1), CORNER_RGB, width)


def _expected_steps(specs: list[PromptSpec], num_frames: int, direction: str) -> int:
    """About how many times the tracking hook is called: the passes' frames and the rendering
    pass (for the progress bar)."""
    firsts: dict[int, int] = {}
    lasts: dict[int, int] = {}
    for spec in specs:
        firsts[spec.obj_id] = min(firsts.get(spec.obj_id, spec.frame), spec.frame)
        lasts[spec.obj_id] = max(lasts.get(spec.obj_id, spec.frame), spec.frame)
    forward = num_frames - min(firsts.values()) if direction != "backward" else 0
    if direction == "backward":
        backward = max(lasts.values()) + 1
    elif direction == "both":
        backward = max(firsts.values())
    else:
        backward = 0
    return max(1, forward + backward + num_frames)


def zip_masks(folder: Path, path: Path) -> Path:
    """A zip of the PNGs of ``folder`` under ``masks/`` (sorted, fixed timestamps, stored: PNGs
    are compressed already); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for png in sorted(folder.glob("*.png")):
            info = zipfile.ZipInfo(f"{MASKS_DIR}/{png.name}", date_time=ZIP_DATE_TIME)
            archive.writestr(info, png.read_bytes())
    return path


#: Prefix of the app's temporary folder (in the system's temporary folder).
APP_FOLDER_PREFIX = "persam-video-app-"


def app_folder() -> Path:
    """A fresh temporary folder for the app's files, after removing those that earlier apps
    left when they were killed (folders carrying this tool's marker whose process is gone)."""
    parent = tempfile.gettempdir()
    remove_stale_marked(parent, APP_FOLDER_PREFIX)
    return make_marked_folder(parent, APP_FOLDER_PREFIX)


class AppSessions:
    """Every browser session's :class:`AppSession`, keyed by the page's session id, with their
    files under one temporary folder that :meth:`close` removes."""

    def __init__(self, models: ModelHolder, root: str | os.PathLike[str] | None = None) -> None:
        self.models = models
        self.root = Path(root) if root is not None else app_folder()
        self.root.mkdir(parents=True, exist_ok=True)
        self._sessions: dict[str, AppSession] = {}
        self._lock = threading.Lock()
        self._count = 0

    def get(self, key: str) -> AppSession:
        """The session of ``key`` (made on first use)."""
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                self._count += 1
                session = AppSession(self.models, self.root / f"session-{self._count:04d}")
                self._sessions[key] = session
            return session

    def drop(self, key: str) -> None:
        """End the session of ``key`` (its tab closed): its files are removed."""
        with self._lock:
            session = self._sessions.pop(key, None)
        if session is not None:
            session.close()

    def __len__(self) -> int:
        return len(self._sessions)

    def close(self) -> None:
        """End every session and remove the whole temporary folder."""
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.close()
        shutil.rmtree(self.root, ignore_errors=True)
