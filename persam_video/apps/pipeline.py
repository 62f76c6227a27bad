"""The one output pipeline: a tracking session's results into a run folder.

Every path that writes a run folder goes through :func:`run_session`: ``track`` from a first-frame
mask, from prompts on any frame or from saved targets, ``find``, ``batch``, ``davis``, ``demo``
and the app. It talks to the engine through :class:`~persam_video.video.engine.TrackingSession`
only, and to the folder through :class:`RunOutputs` (the one run-folder object: temporaries, the
output sink, the results document and report, commit or abort).

Two ways to write, chosen by the input:

* **stream** (the input is an open :class:`~persam_video.io.FrameSource`; the session reads it
  through :class:`~persam_video.io.streamed.StreamedFrames`): the results come once per frame in
  frame order and go straight to the :class:`~persam_video.apps.outputs.OutputSink`. Keyframes,
  ``--heatmap``, ``start`` and ``max_frames`` work here.
* **passes** (the input can be read again: a file, a folder, frames in memory): the session's
  passes (forward and/or backward, out of frame order) write mask PNGs as results come, then a
  rendering pass reads the input in frame order and encodes the videos from them
  (:mod:`persam_video.apps.passes`). ``--heatmap`` is refused there in one line (the passes keep
  no similarity maps).

Interrupted or failed runs keep the partial contract: what was finished under ``.partial`` names,
the last complete run left in place, nothing half-written (:mod:`persam_video.atomic`).
"""

from __future__ import annotations

import time
from typing import Any

from persam_video.apps.outputs import (
    RunOutputs,
    RunRequest,
    RunStatus,
    TrackSummary,
    frame_record,
    propagate_into,
)
from persam_video.apps.passes import run_passes
from persam_video.atomic import OutputClaim
from persam_video.io import FrameSource, VideoReadError
from persam_video.video import FrameResult
from persam_video.video.engine import TrackingSession


def run_session(
    session: TrackingSession,
    claim: OutputClaim,
    source: Any,
    request: RunRequest,
) -> TrackSummary:
    """Propagate ``session`` in ``request.direction`` and write the run folder of ``claim``.

    Args:
        session: the engine's session, prompts and targets added.
        claim: the output folder, locked and claimed (:func:`persam_video.atomic.run_folder`).
        source: the input: an open :class:`FrameSource` that ``session`` streams (stream), or
            what :func:`persam_video.io.open_source` re-reads for the rendering pass (passes).
        request: what to write and record (:class:`RunRequest`).

    Returns:
        A :class:`~persam_video.apps.outputs.TrackSummary`; ``status`` is ``partial`` when
        decoding failed in the middle and ``interrupted`` after Ctrl-C.
    """
    session.check_direction(request.direction)
    with RunOutputs(claim, request.options) as outputs:
        if isinstance(source, FrameSource):
            return _stream(session, outputs, source, request)
        return run_passes(session, outputs, source, request)


def _stream(
    session: TrackingSession, outputs: RunOutputs, source: FrameSource, request: RunRequest
) -> TrackSummary:
    """Stream mode (see the module): each result goes to the sink as it comes."""
    if not session.in_frame_order(request.direction):
        raise ValueError(
            "a streamed input is tracked forward from its first frame, where every prompt must "
            "be; give a video file, a folder or a list of frames for prompts on later frames"
        )
    object_ids = sorted({*session.object_ids, *session.target_ids})
    annotated = frozenset(session.annotated_frames)
    sink = outputs.open_sink(
        source,
        request.options,
        object_ids=object_ids,
        annotated=annotated,
        audio=request.start == 0,
    )
    records: list[dict[str, Any]] = []
    finetune: dict[int, dict[str, Any]] = {}

    def take(result: FrameResult) -> None:
        sink.put(result)
        records.append(frame_record(result))
        if request.on_result is not None:
            request.on_result(result)
        finetune.update({o.obj_id: o.finetune for o in result.objects if o.finetune})

    status, error = propagate_into(session, request, take)
    if status == RunStatus.PARTIAL and not records:
        # nothing to keep: the input is unreadable, not the run partial
        raise VideoReadError(error or "the input cannot be decoded")
    summary = TrackSummary(
        out_dir=outputs.folder,
        status=status,
        frames=len(records),
        object_ids=object_ids,
        seconds=0.0,
        outputs=sink.finish(partial=status != RunStatus.COMPLETE),
        error=error,
        finetune=finetune,
        annotation=request.annotation,
        warnings=request.warnings,
        start=request.start,
        max_frames=request.max_frames,
    )
    summary.seconds = time.perf_counter() - request.began
    engine = session.run_record()
    outputs.finish(summary, records, source, engine, request.metadata, annotated=sorted(annotated))
    return summary
