"""Track a video into an output folder: masks, overlay and masked videos, results.json.

The data flow is one-directional: the frame source decodes ahead in its own thread, the tracker
runs the model in the calling thread, and an :class:`OutputSink` thread draws overlays and writes
PNGs while the video writers encode in their own threads; every queue is bounded, so memory does
not grow with the video's length.

Nothing half-written ever looks finished: files are written under temporary names and renamed
at the end (:mod:`persam_video.atomic`). If decoding fails in the middle or the user presses
Ctrl-C, what was finished is kept under ``.partial`` names (``masks.partial/``,
``overlay.partial.mp4``, ``results.partial.json`` saying ``"status": "partial"`` with the
reason) beside the last complete run, which stays as it was. A run replaces only the outputs
of earlier ``track`` runs in its folder (:func:`persam_video.atomic.claim_outputs`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import Enum
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np

from persam_video._version import __version__
from persam_video.apps import visualize
from persam_video.apps.report import REPORT_NAME, KeyFrames, render_report
from persam_video.atomic import (
    OutputClaim,
    check_not_overwriting,
    commit,
    discard,
    run_folder,
    temp_path,
)
from persam_video.io import (
    AlphaVideoWriter,
    Frame,
    FrameSource,
    VideoDecodeError,
    VideoReadError,
    VideoWriter,
    open_source,
    read_mask_sources,
    resize_labels,
)
from persam_video.io.mask_formats import (
    FORMAT_NAMES,
    MASK_FORMATS,
    MaskFormat,
    MaskWriter,
    open_mask_writer,
)
from persam_video.labels import LabelMap, fragmentation_warning, from_array
from persam_video.persam import Target
from persam_video.progress import progress_bar
from persam_video.video import FrameResult, ObjectResult, VideoTracker

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


def load_first_mask(
    mask: str | os.PathLike[str] | np.ndarray | LabelMap,
    size: tuple[int, int],
    *,
    resize: bool = False,
) -> LabelMap:
    """The first frame's annotation from a file or an array, checked against ``size`` (H, W).

    Files follow :func:`persam_video.io.read_mask` (palette indices are the ids); arrays follow
    :func:`persam_video.labels.from_array`. With ``resize``, a mask of another size is resized
    (nearest neighbour) to the frames'. The result is checked once, here.
    """
    if isinstance(mask, LabelMap):
        return LabelMap.check(mask, size)
    sources = None
    if isinstance(mask, (str, os.PathLike)):
        labels, sources = read_mask_sources(mask)
    else:
        labels = from_array(mask)
    if labels.shape != tuple(size) and resize:
        labels = resize_labels(labels, size)
    return dataclasses.replace(LabelMap.check(labels, size), sources=sources)


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


def check_inputs_survive(out_dir: str | os.PathLike[str], inputs: list[Any]) -> None:
    """Refuse a run whose outputs (or the older outputs it removes) would overwrite one of
    its input files or folders."""
    paths = [item for item in inputs if isinstance(item, (str, os.PathLike))]
    check_not_overwriting(paths, output_paths(out_dir, ALL_OUTPUTS))


def check_mask_or_targets(has_mask: bool, has_targets: bool) -> None:
    """The rule for what a run starts from: a first-frame mask or saved targets, not both."""
    if has_mask == has_targets:
        raise ValueError(
            "give either the first frame's mask (--mask) or saved targets (--target), not both"
        )


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


def track_to_folder(
    tracker: VideoTracker,
    source: str | os.PathLike[str] | Iterable[np.ndarray] | FrameSource,
    first_mask: str | os.PathLike[str] | np.ndarray | LabelMap | None,
    out_dir: str | os.PathLike[str],
    *,
    targets: list[Target] | None = None,
    options: OutputOptions | None = None,
    resize_mask: bool = False,
    fps: Fraction | None = None,
    progress: bool = True,
    metadata: dict[str, Any] | None = None,
    start: int = 0,
    max_frames: int | None = None,
    on_frame: Callable[[FrameResult], None] | None = None,
    claim: OutputClaim | None = None,
) -> TrackSummary:
    """Track the objects of ``first_mask`` through ``source`` and write the outputs to ``out_dir``.

    Args:
        tracker: the :class:`VideoTracker` (model and config).
        source: a video file, a folder of frames, an iterable of (H, W, 3) uint8 RGB frames, or
            an open :class:`FrameSource`.
        first_mask: the first frame's annotation: a mask file (binary, grayscale ids, palette or
            colour PNG), an array (see :func:`load_first_mask`) or a checked
            :class:`~persam_video.labels.LabelMap`; None with ``targets``.
        out_dir: output folder (created if needed).
        targets: saved targets to find instead of an annotated first frame (object ids 1..K).
        options: what to write (:class:`OutputOptions`).
        resize_mask: resize a mask of another size to the frames (nearest neighbour).
        fps: frame rate of a folder/iterable source (video files carry their own).
        progress: show a progress bar with frames/s.
        metadata: extra run metadata for results.json (e.g. the model and checkpoint hash).
        start: first frame to track (0-based, in decoding order); ``first_mask`` annotates it.
            The outputs start there: frame ``start`` becomes output frame 0 at time 0 (audio is
            not copied then, it would be out of step).
        max_frames: track at most this many frames.
        on_frame: called with each frame's result as it is tracked, in the calling thread (to
            gather something of one's own, e.g. the spans of ``find``); an exception it raises
            ends the run as any other failure does.
        claim: ``out_dir`` already locked and claimed by the caller (a command that writes
            more beside the track outputs, see :func:`persam_video.atomic.run_folder`); by
            default the run locks and claims the folder itself.

    Returns:
        A :class:`TrackSummary`; ``status`` is ``partial`` when decoding failed in the middle
        and ``interrupted`` after Ctrl-C (outputs then carry ``.partial`` names).
    """
    options = options or OutputOptions()
    check_mask_or_targets(first_mask is not None, targets is not None)
    check_inputs_survive(out_dir, [source, first_mask])
    if start < 0 or (max_frames is not None and max_frames < 1):
        raise ValueError(f"start must be >= 0 and max_frames >= 1, got {start} and {max_frames}")
    args = (
        targets,
        options,
        resize_mask,
        fps,
        progress,
        metadata or {},
        start,
        max_frames,
        on_frame,
    )
    if claim is not None:
        return _track_locked(tracker, source, first_mask, claim, *args)
    with track_folder(out_dir) as held:
        return _track_locked(tracker, source, first_mask, held, *args)


def track_folder(out_dir: str | os.PathLike[str]) -> AbstractContextManager[OutputClaim]:
    """The output folder of a track run (:func:`persam_video.atomic.run_folder`), claiming
    every name a track run may write."""
    return run_folder(out_dir, TRACK_COMMAND, [p.name for p in output_paths(out_dir)])


def _track_locked(
    tracker: VideoTracker,
    source: str | os.PathLike[str] | Iterable[np.ndarray] | FrameSource,
    first_mask: str | os.PathLike[str] | np.ndarray | LabelMap | None,
    claim: OutputClaim,
    targets: list[Target] | None,
    options: OutputOptions,
    resize_mask: bool,
    fps: Fraction | None,
    progress: bool,
    metadata: dict[str, Any],
    start: int,
    max_frames: int | None,
    on_frame: Callable[[FrameResult], None] | None = None,
) -> TrackSummary:
    """:func:`track_to_folder` once the output folder is locked and claimed."""
    out = claim.folder
    began = time.perf_counter()
    frames = source if isinstance(source, FrameSource) else open_source(source, fps=fps)
    with frames:
        annotation, warnings = None, []
        if targets is None:
            annotation = load_first_mask(first_mask, frames.size, resize=resize_mask)
            warnings = [w for w in [fragmentation_warning(annotation.array)] if w]
        selected = frame_range(frames, start, max_frames)
        if annotation is not None:
            results = tracker.track(selected, annotation)
            object_ids = list(annotation.ids)
        else:
            results = tracker.track_targets(selected, targets)
            object_ids = list(range(1, len(targets) + 1))
        annotated = frozenset({0}) if annotation is not None else frozenset()
        sink = OutputSink(
            out, frames, options, audio=start == 0, object_ids=object_ids, annotated=annotated
        )
        records: list[dict[str, Any]] = []
        finetune: dict[int, dict[str, Any]] = {}
        status, error = RunStatus.COMPLETE, None
        total = frames.num_frames
        if total is not None:
            total = max(0, total - start)
            total = total if max_frames is None else min(total, max_frames)
        bar = progress_bar(total=total, unit="frame", enabled=progress, desc="tracking")
        try:
            with bar:
                for result in results:
                    sink.put(result)
                    records.append(frame_record(result))
                    if on_frame is not None:
                        on_frame(result)
                    finetune.update({o.obj_id: o.finetune for o in result.objects if o.finetune})
                    bar.update(1)
        except VideoDecodeError as exc:
            if not records:  # nothing to keep: the input is unreadable, not the run partial
                sink.abort()
                raise VideoReadError(str(exc)) from None
            status, error = RunStatus.PARTIAL, str(exc)
        except KeyboardInterrupt:
            status, error = RunStatus.INTERRUPTED, "interrupted by the user"
        except BaseException:
            sink.abort()
            raise
        outputs = sink.finish(partial=status != RunStatus.COMPLETE)
    seconds = time.perf_counter() - began
    summary = TrackSummary(
        out_dir=out,
        status=status,
        frames=len(records),
        object_ids=object_ids,
        seconds=seconds,
        outputs=outputs,
        error=error,
        finetune=finetune,
        annotation=annotation,
        warnings=warnings,
        start=start,
        max_frames=max_frames,
    )
    try:
        if sink.key_frames is not None:
            summary.outputs["report"] = report_name(status)
        document = results_document(summary, records, frames, tracker, metadata)
        last = stage_final_files(out, document, sink.key_frames, annotated)
        sink.commit(claim, last, partial=status != RunStatus.COMPLETE)
    except BaseException:
        sink.abort()
        raise
    return summary


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


def frame_range(frames: Iterable[Frame], start: int, max_frames: int | None) -> Iterator[Frame]:
    """Frames ``start`` .. ``start + max_frames - 1`` of a source, renumbered from 0 with times
    from 0 (so the outputs begin with the first tracked frame)."""
    first_time, count, seen = None, 0, 0
    for frame in frames:
        seen += 1
        if frame.index < start:
            continue
        if max_frames is not None and count >= max_frames:
            return
        if first_time is None:
            first_time = frame.time
        shifted = None if frame.time is None else frame.time - (first_time or 0.0)
        yield Frame(index=frame.index - start, time=shifted, rgb=frame.rgb)
        count += 1
    if count == 0 and start > 0:
        raise ValueError(f"--start {start} is past the last frame (the input has {seen} frames)")


def frame_record(result: FrameResult) -> dict[str, Any]:
    """The results.json entry of one frame (``bbox``: inclusive pixel x0, y0, x1, y1).

    ``keyframe``: whether SAM ran on the frame (else its masks were carried along the optical
    flow, and ``score`` and ``peak_similarity`` are null); ``rekey``, on the keyframes that
    ``keyframes.mode: auto`` chose: why (``flow``, ``border``, ``area``, ``gap``)."""
    record = {
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
    tracker: VideoTracker,
    metadata: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The results.json document of a run (schema documented in docs/outputs.md); ``extra`` keys
    (the prompts of a prompted run) go before ``frames``."""
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
            "config": tracker.config.to_dict(),
            "device": str(tracker.sam.device),
            "encoder": tracker.persam.encoder.settings(),
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
