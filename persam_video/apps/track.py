"""Track a video into an output folder: masks, overlay and masked videos, report, results.json.

:func:`track_to_folder` is the Python API of ``track`` from a first-frame mask or saved
targets: it opens the engine's session on the input (streamed, decoded ahead in its own thread)
and hands it to the one output pipeline (:func:`persam_video.apps.pipeline.run_session`), which
writes as the results come, with flat memory.

Nothing half-written ever looks finished: files are written under temporary names and moved into
place at the end (:mod:`persam_video.atomic`). If decoding fails in the middle or the user presses
Ctrl-C, what was finished is kept under ``.partial`` names (``masks.partial/``,
``overlay.partial.mp4``, ``results.partial.json`` saying ``"status": "partial"`` with the reason)
beside the last complete run, which stays as it was. A run replaces only the outputs of earlier
``track`` runs in its folder (:func:`persam_video.atomic.claim_outputs`).

The output names, the sink and the results document live in :mod:`persam_video.apps.outputs`
(re-exported here).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from fractions import Fraction
from typing import Any

import numpy as np

from persam_video.apps.outputs import (
    ALL_OUTPUTS,
    DEFAULT_FPS,
    HEATMAP_NAME,
    MASKED_NAMES,
    MASKS_DIR,
    OVERLAY_NAME,
    PARTIAL_SUFFIX,
    PROMPT_MASKS_DIR,
    RESULTS_NAME,
    TRACK_COMMAND,
    OutputOptions,
    OutputSink,
    RunRequest,
    RunStatus,
    TrackSummary,
    frame_record,
    output_paths,
    partial_name,
    replaced_outputs,
    report_name,
    results_document,
    results_name,
    stage_final_files,
)
from persam_video.apps.pipeline import run_session
from persam_video.atomic import OutputClaim, check_not_overwriting, run_folder
from persam_video.io import FrameSource, open_source, read_mask_sources, resize_labels
from persam_video.io.streamed import StreamedFrames, check_frame_range, frame_range
from persam_video.labels import LabelMap, fragmentation_warning, from_array
from persam_video.persam import Target
from persam_video.video import FrameResult, VideoTracker
from persam_video.video.engine import Engine, as_engine

__all__ = [
    "ALL_OUTPUTS",
    "DEFAULT_FPS",
    "HEATMAP_NAME",
    "MASKED_NAMES",
    "MASKS_DIR",
    "OVERLAY_NAME",
    "PARTIAL_SUFFIX",
    "PROMPT_MASKS_DIR",
    "RESULTS_NAME",
    "TRACK_COMMAND",
    "OutputOptions",
    "OutputSink",
    "RunStatus",
    "TrackSummary",
    "check_inputs_survive",
    "check_mask_or_targets",
    "frame_range",
    "frame_record",
    "load_first_mask",
    "output_paths",
    "partial_name",
    "replaced_outputs",
    "report_name",
    "results_document",
    "results_name",
    "stage_final_files",
    "track_folder",
    "track_to_folder",
]


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


def check_inputs_survive(out_dir: str | os.PathLike[str], inputs: list[Any]) -> None:
    """Refuse a run whose outputs (or the older outputs it removes) would overwrite one of
    its input files or folders."""
    paths = [item for item in inputs if isinstance(item, (str, os.PathLike))]
    check_not_overwriting(paths, output_paths(out_dir, ALL_OUTPUTS))


def check_mask_or_targets(has_mask: bool, has_targets: bool) -> None:
    """The rule for what a run starts from: a first-frame mask or saved targets, not both."""
    if not has_mask and not has_targets:
        raise ValueError(
            "nothing to track from: give the first frame's mask (--mask), or saved targets "
            "(--target)"
        )
    if has_mask and has_targets:
        raise ValueError(
            "give either the first frame's mask (--mask) or saved targets (--target), not both"
        )


def track_to_folder(
    tracker: Engine | VideoTracker,
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
        tracker: the engine (:class:`~persam_video.video.engine.Engine`), or a
            :class:`VideoTracker` (model and config) as the PerSAM engine.
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
    check_frame_range(start, max_frames)  # before the folder is created
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
    engine: Engine | VideoTracker,
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
    began = time.perf_counter()
    frames = source if isinstance(source, FrameSource) else open_source(source, fps=fps)
    with frames:
        annotation, warnings = None, []
        if first_mask is not None:
            annotation = load_first_mask(first_mask, frames.size, resize=resize_mask)
            warnings = [w for w in [fragmentation_warning(annotation.array)] if w]
        session = as_engine(engine).open_session(StreamedFrames(frames, start, max_frames))
        if annotation is not None:
            session.add_labels(0, annotation)
        for obj_id, target in enumerate(targets or [], start=1):
            session.add_target(obj_id, target)
        request = RunRequest(
            options=options,
            direction="forward",
            progress=progress,
            metadata=metadata,
            annotation=annotation,
            warnings=warnings,
            start=start,
            max_frames=max_frames,
            on_result=on_frame,
            began=began,
        )
        return run_session(session, claim, frames, request)
