"""The one place a run's outputs are written: masks, overlay and masked videos, report.html and
results.json (their names, what each holds, and the background thread that writes them).

Every path that writes a run folder (a first-frame mask, prompts on any frame, saved targets,
``find``, ``batch``, ``davis``, the app) goes through :mod:`persam_video.apps.pipeline`, which
uses this module: :class:`OutputSink` draws overlays and writes masks in a background thread while
the video writers encode in their own threads; every queue is bounded, so memory does not grow
with the video's length. Files are written under temporary names and moved into place at the end
(:mod:`persam_video.atomic`); results.json's schema is documented in docs/outputs.md.
"""

from __future__ import annotations

import json
import os
import platform
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np

from persam_video._version import __version__
from persam_video.apps import visualize
from persam_video.apps.report import REPORT_NAME, KeyFrames, render_report
from persam_video.atomic import (
    OutputClaim,
    commit,
    discard,
    temp_path,
)
from persam_video.io import (
    AlphaVideoWriter,
    FrameSource,
    VideoDecodeError,
    VideoWriter,
)
from persam_video.io.mask_formats import (
    FORMAT_NAMES,
    MASK_FORMATS,
    MaskFormat,
    MaskWriter,
    open_mask_writer,
)
from persam_video.labels import LabelMap
from persam_video.progress import progress_bar
from persam_video.video import FrameResult, ObjectResult
from persam_video.video.engine import TrackingSession
from persam_video.video.session import Direction, SessionResult

MASKS_DIR = FORMAT_NAMES["davis"]
OVERLAY_NAME = "overlay.mp4"
MASKED_NAMES = {"cutout": "masked.mp4", "blur": "masked.mp4", "alpha": "masked.mov"}
RESULTS_NAME = "results.json"
HEATMAP_NAME = "similarity.mp4"
#: The masks a prompted run made of its clicks and boxes (``--save-prompt-masks``).
PROMPT_MASKS_DIR = "prompt_masks"
PARTIAL_SUFFIX = ".partial"
#: Frame rate given to the output videos of a folder/iterable source with no frame rate.
DEFAULT_FPS = Fraction(24)
SINK_QUEUE_SIZE = 8
#: The command recorded as the owner of a track output folder.
TRACK_COMMAND = "track"
#: ``output_paths(out, ALL_OUTPUTS)``: the names of every output any run may write.
ALL_OUTPUTS = None
MaskedVideo = Literal["none", "cutout", "blur", "alpha"]


class RunStatus(str, Enum):
    """How a run ended (as written in results.json)."""

    COMPLETE = "complete"
    #: Decoding failed in the middle; what was finished is kept under ``.partial`` names.
    PARTIAL = "partial"
    #: Ctrl-C; what was finished is kept under ``.partial`` names.
    INTERRUPTED = "interrupted"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


@dataclass(frozen=True)
class OutputOptions:
    """What :func:`track_to_folder` writes."""

    save_masks: bool = True
    overlay: bool = True
    #: ``none``, ``cutout`` (objects on black), ``blur`` (blurred background) or ``alpha``
    #: (transparent background, PNG-in-MOV).
    masked_video: MaskedVideo = "none"
    #: Draw each frame's prompt points on the overlay.
    draw_points: bool = False
    #: Draw a legend (each object's colour and id) on the overlay.
    legend: bool = True
    #: How masks are written: ``davis`` (palette PNGs), ``per-object-png`` or ``coco-rle``
    #: (see :mod:`persam_video.io.mask_formats`).
    mask_format: MaskFormat = "davis"
    #: Write ``report.html`` (see :mod:`persam_video.apps.report`).
    report: bool = True
    #: Write ``similarity.mp4``: each object's location confidence over the frame, one panel
    #: per object side by side (see :func:`persam_video.apps.visualize.heatmap`).
    heatmap: bool = False

    def __post_init__(self) -> None:
        if self.mask_format not in MASK_FORMATS:
            raise ValueError(
                f"unknown mask format {self.mask_format!r}; use {', '.join(MASK_FORMATS)}"
            )
        if self.masked_video != "none" and self.masked_video not in visualize.MASKED_MODES:
            raise ValueError(
                f"unknown masked video {self.masked_video!r}; use none, "
                f"{', '.join(visualize.MASKED_MODES)}"
            )


@dataclass
class TrackSummary:
    """What a :func:`track_to_folder` run did."""

    out_dir: Path
    status: RunStatus
    frames: int
    object_ids: list[int]
    seconds: float
    outputs: dict[str, str]
    error: str | None = None
    #: Per object id, how PerSAM-F went on the annotated frame (weights, steps, seconds, ...).
    finetune: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: The first-frame annotation (with where its ids came from), or None with targets.
    annotation: LabelMap | None = None
    #: One-line warnings about the inputs (e.g. a mask that looks anti-aliased).
    warnings: list[str] = field(default_factory=list)
    #: The input's frames tracked: from ``start``, at most ``max_frames`` (None: to the end).
    start: int = 0
    max_frames: int | None = None

    @property
    def finetune_seconds(self) -> float:
        """Seconds spent fitting PerSAM-F weights (part of ``seconds``)."""
        return float(sum(info["seconds"] for info in self.finetune.values()))

    @property
    def frames_per_second(self) -> float:
        """Frames per second of tracking, fine-tuning time excluded."""
        tracking = self.seconds - self.finetune_seconds
        return self.frames / tracking if tracking > 0 else 0.0


def output_paths(
    out_dir: str | os.PathLike[str], options: OutputOptions | None = ALL_OUTPUTS
) -> list[Path]:
    """Every file and folder a run with ``options`` may write in ``out_dir`` (final and
    ``.partial`` names); with :data:`ALL_OUTPUTS`, those of any run (a run removes what an
    older one left under these names, so its outputs are exactly its own)."""
    out = Path(out_dir)
    names = [RESULTS_NAME]
    prompted: list[str] = []
    if options is None:  # every name any run may write (a prompted run's prompt masks too)
        names += [
            *sorted(set(FORMAT_NAMES.values())),
            OVERLAY_NAME,
            *sorted(set(MASKED_NAMES.values())),
            REPORT_NAME,
            HEATMAP_NAME,
        ]
        prompted = [PROMPT_MASKS_DIR]
    else:
        wanted = [
            (options.save_masks, FORMAT_NAMES[options.mask_format]),
            (options.overlay, OVERLAY_NAME),
            (options.masked_video != "none", MASKED_NAMES.get(options.masked_video, "")),
            (options.report, REPORT_NAME),
            (options.heatmap, HEATMAP_NAME),
        ]
        names += [name for asked, name in wanted if asked]
    partials = [partial_name(n, PARTIAL_SUFFIX) for n in [*names, *prompted]]
    return [out / name for name in [*names, *prompted, *partials]]


def replaced_outputs(out_dir: str | os.PathLike[str], *, partial: bool) -> list[Path]:
    """What a run removes of an older run's outputs before moving its own into place: all of
    them after a complete run; after one that did not complete, only the ``.partial`` ones (the
    last complete run stays)."""
    paths = output_paths(out_dir, ALL_OUTPUTS)
    if not partial:
        return paths
    return [p for p in paths if PARTIAL_SUFFIX in p.name]


def partial_name(name: str, suffix: str) -> str:
    """``overlay.mp4`` -> ``overlay<suffix>.mp4``, ``masks`` -> ``masks<suffix>``."""
    stem, ext = os.path.splitext(name)
    return f"{stem}{suffix}{ext}"


class OutputSink:
    """Writes results in a background thread: mask PNGs, overlay and masked videos.

    Errors raised in the thread surface on the next :meth:`put` or on :meth:`finish`.
    """

    def __init__(
        self,
        out_dir: Path,
        source: FrameSource,
        options: OutputOptions,
        *,
        audio: bool = True,
        object_ids: list[int] | None = None,
        annotated: frozenset[int] = frozenset(),
    ) -> None:
        self.out_dir = out_dir
        self.options = options
        self.frames = 0
        self._masks: MaskWriter | None = None
        #: Key frames for the report (None without one).
        self.key_frames = KeyFrames(annotated) if options.report else None
        self._moves: list[tuple[Path, Path]] = []
        self._writers: dict[str, VideoWriter] = {}
        self._error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=SINK_QUEUE_SIZE)
        fps = source.fps or DEFAULT_FPS
        audio_from = source.path if source.has_audio and audio else None
        common: dict[str, Any] = {"fps": fps, "size_hw": source.size, "time_base": source.time_base}
        try:
            if options.save_masks:
                final = out_dir / FORMAT_NAMES[options.mask_format]
                self._masks = open_mask_writer(options.mask_format, final, object_ids or [])
            if options.overlay:
                self._writers["overlay"] = VideoWriter(
                    out_dir / OVERLAY_NAME, audio_from=audio_from, **common
                )
            if options.masked_video != "none":
                name = MASKED_NAMES[options.masked_video]
                kind = AlphaVideoWriter if options.masked_video == "alpha" else VideoWriter
                self._writers["masked"] = kind(out_dir / name, audio_from=audio_from, **common)
            if options.heatmap:
                height, width = source.size
                panels = {**common, "size_hw": (height, width * max(1, len(object_ids or [])))}
                self._writers["heatmap"] = VideoWriter(out_dir / HEATMAP_NAME, **panels)
        except BaseException:
            self.abort()
            raise
        self._thread = threading.Thread(target=self._run, name="persam-outputs", daemon=True)
        self._thread.start()

    def put(self, result: FrameResult) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(result)

    def _run(self) -> None:
        while (result := self._queue.get()) is not None:
            if self._error is not None:
                continue
            try:
                self._write(result)
            except BaseException as exc:  # surfaced in the caller's thread
                self._error = exc

    def _write(self, result: FrameResult) -> None:
        opts = self.options
        if self._masks is not None:
            scores = {o.obj_id: o.score for o in result.objects}
            self._masks.write(self.frames, result.labels, scores)
        if self.key_frames is not None:
            present = {o.obj_id: o.present for o in result.objects}
            self.key_frames.add(self.frames, result.frame, result.labels, present)
        if "overlay" in self._writers:
            points = None
            if opts.draw_points:
                points = [(o.points, o.point_labels) for o in result.objects if o.present]
            legend = [o.obj_id for o in result.objects] if opts.legend else None
            image = visualize.overlay(result.frame, result.labels, points, legend)
            self._writers["overlay"].write(image, result.time)
        if "masked" in self._writers:
            image = visualize.masked(result.frame, result.labels, opts.masked_video)
            self._writers["masked"].write(image, result.time)
        if "heatmap" in self._writers:
            maps = [(o.obj_id, o.similarity) for o in result.objects]
            self._writers["heatmap"].write(
                visualize.heatmap(result.frame, result.labels, maps), result.time
            )
        self.frames += 1

    def finish(self, *, partial: bool) -> dict[str, str]:
        """Flush everything; return output name -> its final name (relative to ``out_dir``).

        The outputs stay under their temporary names until :meth:`commit`.
        """
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            self.abort()
            raise self._error
        outputs = {}
        suffix = PARTIAL_SUFFIX if partial else ""
        try:
            if self._masks is not None:
                self._masks.close()
                final = self.out_dir / partial_name(FORMAT_NAMES[self.options.mask_format], suffix)
                self._moves.append((self._masks.temporary, final))
                outputs["masks"] = final.name
            for key, writer in self._writers.items():
                if self.frames == 0:
                    writer.abort()
                    continue
                final = self.out_dir / partial_name(writer.path.name, suffix)
                self._moves.append((writer.close(move=False), final))
                outputs[key] = final.name
        except BaseException:
            self.abort()
            raise
        return outputs

    def commit(self, claim: OutputClaim, last: list[tuple[Path, Path]], *, partial: bool) -> None:
        """Move the finished outputs into place, then ``last`` (``(temporary, final)`` pairs:
        results.json), removing what an older run left under the names this run replaces
        (:func:`replaced_outputs`)."""
        moves = self._moves + last
        commit(moves, remove=replaced_outputs(self.out_dir, partial=partial), claim=claim)
        self._moves = []

    def abort(self) -> None:
        """Delete every temporary output."""
        for writer in self._writers.values():
            writer.abort()
        if self._masks is not None:
            self._masks.abort()
        self._moves = []


def report_name(status: RunStatus) -> str:
    """``report.html``, or ``report.partial.html`` for a run that did not complete."""
    return partial_name(REPORT_NAME, "" if status == RunStatus.COMPLETE else PARTIAL_SUFFIX)


def results_name(status: RunStatus | str) -> str:
    """``results.json``, or ``results.partial.json`` for a run that did not complete."""
    complete = status == RunStatus.COMPLETE
    return partial_name(RESULTS_NAME, "" if complete else PARTIAL_SUFFIX)


def stage_final_files(
    out: Path,
    document: dict[str, Any],
    key_frames: KeyFrames | None,
    annotated: Iterable[int],
) -> list[tuple[Path, Path]]:
    """Write the report (when ``key_frames`` were collected) and the results document
    (:func:`results_name`) under temporary names; return their ``(temporary, final)`` moves,
    the results document last (for ``commit``). Nothing is left behind when writing fails."""
    staged: list[tuple[Path, Path]] = []
    try:
        if key_frames is not None:
            report = out / document["outputs"]["report"]
            page = render_report(
                document, key_frames.finish(), annotated=annotated, skipped=key_frames.skipped
            )
            staged.append((temp_path(report), report))
            staged[-1][0].write_text(page, encoding="utf-8")
        results = out / results_name(document["status"])
        staged.append((temp_path(results), results))
        staged[-1][0].write_text(json.dumps(document, indent=1, allow_nan=False), "utf-8")
    except BaseException:
        for tmp, _ in staged:
            discard(tmp)
        raise
    return staged


def frame_record(result: FrameResult) -> dict[str, Any]:
    """The results.json entry of one frame (``bbox``: inclusive pixel x0, y0, x1, y1).

    ``keyframe``: whether SAM ran on the frame (else its masks were carried along the optical
    flow, and ``score`` and ``peak_similarity`` are null); ``rekey``, on the keyframes that
    ``keyframes.mode: auto`` chose: why (``flow``, ``border``, ``area``, ``gap``)."""
    record: dict[str, Any] = {
        "index": result.index,
        "time": result.time,
        "keyframe": result.keyframe,
        "objects": {str(o.obj_id): _object_record(o) for o in result.objects},
    }
    if result.rekey is not None:
        record["rekey"] = result.rekey
    return record


def _object_record(obj: ObjectResult) -> dict[str, Any]:
    record: dict[str, Any] = {
        "present": obj.present,
        "score": finite_or_none(obj.score),
        "area": obj.area,
        "bbox": list(obj.bbox) if obj.bbox is not None else None,
        "peak_similarity": finite_or_none(obj.peak_similarity),
        "updated": obj.updated,
        "lost": obj.lost,
        "reacquired": obj.reacquired,
    }
    if obj.finetune is not None:
        record["finetune"] = obj.finetune
    return record


def results_document(
    summary: TrackSummary,
    records: list[dict[str, Any]],
    source: FrameSource,
    engine: dict[str, Any],
    metadata: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The results.json document of a run (schema documented in docs/outputs.md).

    ``engine`` is what the tracking engine says of itself (``TrackingSession.run_record``:
    its name, config, device, encoder), ``metadata`` what the caller adds (the model and its
    checkpoint); ``extra`` keys (the prompts of a prompted run) go before ``frames``."""
    document = {
        "format": "persam-video results",
        "format_version": 1,
        "status": summary.status,
        "error": summary.error,
        "input": {
            "path": str(source.path) if source.path is not None else None,
            "kind": source.kind,
            "size_hw": list(source.size),
            "fps": str(source.fps or DEFAULT_FPS),
            "fps_from": "input" if source.fps is not None else "default",
            "frames_expected": source.num_frames,
            "start": summary.start,
            "max_frames": summary.max_frames,
        },
        "object_ids": summary.object_ids,
        "annotation": _annotation_record(summary.annotation),
        "warnings": summary.warnings,
        "outputs": summary.outputs,
        "run": {
            **metadata,
            **engine,
            "versions": versions(),
        },
        "timings": {
            "total_s": round(summary.seconds, 3),
            "finetune_s": round(summary.finetune_seconds, 3),
            "frames": summary.frames,
            "frames_per_s": round(summary.frames_per_second, 3),
        },
        **(extra or {}),
        "frames": records,
    }
    return document


def _annotation_record(annotation: LabelMap | None) -> dict[str, Any] | None:
    """What the first-frame annotation was: the mask file's kind and, per object id, its value
    or colour in the file (None for an array or with targets)."""
    if annotation is None or annotation.sources is None:
        return None
    sources = annotation.sources
    return {"kind": sources.kind, "ids": {str(i): value for i, value in sources.ids}}


def versions() -> dict[str, str]:
    """Versions of the libraries that shape the results."""
    import importlib.metadata as md

    found = {"persam-video": __version__, "python": platform.python_version()}
    for dist in ("torch", "segment-anything", "decord", "av", "numpy", "opencv-python"):
        try:
            found[dist] = md.version(dist)
        except md.PackageNotFoundError:
            found[dist] = "not installed"
    return found


def finite_or_none(value: float) -> float | None:
    """``value`` rounded for JSON, or None when it is not finite (JSON has no NaN)."""
    return round(value, 6) if np.isfinite(value) else None


#: Called once per frame result of the passes (``"track"``, frame index) and per frame of the
#: rendering pass (``"render"``, frame index); an exception it raises stops the run as any
#: other (temporaries removed, the folder as it was), so a caller can cancel through it.
FrameHook = Callable[[str, int], None]
#: The stages a :data:`FrameHook` is told of.
TRACK_STAGE, RENDER_STAGE = "track", "render"


@dataclass
class RunRequest:
    """What a run writes and records, beside the session and the folder.

    Attributes:
        options: which outputs (:class:`~persam_video.apps.outputs.OutputOptions`).
        direction: the direction to propagate in.
        progress: show a progress bar.
        metadata: what results.json's ``run`` records beside the engine (model, checkpoint).
        fps: frame rate of a folder or sequence input (the rendering pass re-reads it).
        annotation: the first-frame annotation with where its ids came from (results.json).
        warnings: one-line warnings about the inputs.
        start, max_frames: the input's frames tracked (stream only).
        save_prompt_masks: write ``prompt_masks/`` (passes only).
        on_result: called with each frame's result in frame order (stream only).
        on_stage: a :data:`FrameHook`.
        began: when the run began (``time.perf_counter``), model work before it included.
    """

    options: OutputOptions = field(default_factory=OutputOptions)
    direction: Direction = "forward"
    progress: bool = True
    metadata: dict[str, Any] = field(default_factory=dict)
    fps: Any = None
    annotation: LabelMap | None = None
    warnings: list[str] = field(default_factory=list)
    start: int = 0
    max_frames: int | None = None
    save_prompt_masks: bool = False
    on_result: Callable[[FrameResult], None] | None = None
    on_stage: FrameHook | None = None
    began: float = field(default_factory=time.perf_counter)


class RunOutputs:
    """One run's outputs in its locked and claimed folder (:func:`persam_video.atomic.run_folder`):
    temporaries, the output sink, and the end: every output moved into place together, the
    results document last (:meth:`finish`), or nothing left (:meth:`abort`).

    Used as a context manager: an exception aborts; temporaries not moved are removed.
    """

    def __init__(self, claim: OutputClaim, options: OutputOptions) -> None:
        self.claim = claim
        self.folder = claim.folder
        self.options = options
        self.sink: OutputSink | None = None
        self._temporaries: list[Path] = []

    def temporary(self, name: str, *, folder: bool = False) -> Path:
        """A fresh temporary path for the output ``name`` (removed at the end unless moved)."""
        path = temp_path(self.folder / name, folder=folder)
        self._temporaries.append(path)
        return path

    def open_sink(
        self,
        source: FrameSource,
        options: OutputOptions,
        *,
        object_ids: list[int],
        annotated: Iterable[int],
        audio: bool = True,
    ) -> OutputSink:
        """The :class:`OutputSink` of this run (its videos timed and sized as ``source``)."""
        self.sink = OutputSink(
            self.folder,
            source,
            options,
            audio=audio,
            object_ids=object_ids,
            annotated=frozenset(annotated),
        )
        return self.sink

    def finish(
        self,
        summary: TrackSummary,
        records: list[dict[str, Any]],
        source: FrameSource,
        engine: dict[str, Any],
        metadata: dict[str, Any],
        *,
        annotated: Iterable[int],
        moves: list[tuple[Path, Path]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Write the report and results.json, then move every output into place (``moves``
        first, then the sink's, then the report and results.json), replacing an older run's."""
        partial = summary.status != RunStatus.COMPLETE
        key_frames = self.sink.key_frames if self.sink is not None else None
        if key_frames is not None:
            summary.outputs["report"] = report_name(summary.status)
        document = results_document(summary, records, source, engine, metadata, extra)
        last = stage_final_files(self.folder, document, key_frames, annotated)
        if self.sink is not None:
            self.sink.commit(self.claim, (moves or []) + last, partial=partial)
        else:
            remove = replaced_outputs(self.folder, partial=partial)
            commit((moves or []) + last, remove=remove, claim=self.claim)

    def abort(self) -> None:
        """Delete every temporary output of the sink."""
        if self.sink is not None:
            self.sink.abort()

    def __enter__(self) -> RunOutputs:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if error is not None:
            self.abort()
        for path in self._temporaries:  # what was not moved into place
            discard(path)


def propagate_into(
    session: TrackingSession, request: RunRequest, take: Callable[[SessionResult], None]
) -> tuple[RunStatus, str | None]:
    """Propagate ``session`` in ``request.direction`` with a progress bar, giving each result
    to ``take`` (then to ``request.on_stage``); how it ended: complete, ``partial`` (decoding
    failed in the middle; the error) or ``interrupted`` (Ctrl-C)."""
    total = session.expected_results(request.direction)
    bar = progress_bar(total=total, unit="frame", enabled=request.progress, desc="tracking")
    try:
        with bar:
            for result in session.propagate(request.direction):
                take(result)
                if request.on_stage is not None:
                    request.on_stage(TRACK_STAGE, result.index)
                bar.update(1)
    except VideoDecodeError as exc:
        return RunStatus.PARTIAL, str(exc)
    except KeyboardInterrupt:
        return RunStatus.INTERRUPTED, "interrupted by the user"
    return RunStatus.COMPLETE, None
