"""The passes mode of the output pipeline (:mod:`persam_video.apps.pipeline`): results out of
frame order, then a rendering pass.

Used when the input can be read again (a file, a folder, frames in memory), with flat memory:

1. the session's passes (forward and/or backward) write each result's mask PNG as it comes, out
   of frame order (a frame reached by both passes, with different objects, is merged with the
   PNG already written: the earlier pass keeps its pixels);
2. a rendering pass decodes the input in frame order and encodes the overlay and masked videos
   from the written masks (input frame rate, timestamps and audio as the stream mode); frames
   no pass reached get an empty mask.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from persam_video.apps.outputs import (
    MASKS_DIR,
    PARTIAL_SUFFIX,
    PROMPT_MASKS_DIR,
    RENDER_STAGE,
    RunOutputs,
    RunRequest,
    RunStatus,
    TrackSummary,
    frame_record,
    partial_name,
    propagate_into,
)
from persam_video.io import FrameSource, VideoDecodeError, open_source, write_label_png
from persam_video.io.mask_formats import MASK_NAME_FORMAT
from persam_video.labels import BACKGROUND_ID
from persam_video.video import FrameResult, ObjectResult
from persam_video.video.engine import TrackingSession
from persam_video.video.session import SessionResult

#: What results.json says of a frame no pass reached.
UNTRACKED = "none"


#: Why the passes mode refuses ``--heatmap``.
HEATMAP_REFUSAL = (
    "--heatmap works when the input is tracked in one pass from its first frame (a first-frame "
    "--mask or --target): the passes of a prompted run keep no similarity maps"
)
#: Name suffix of the working folder of the passes' mask PNGs (a hidden temporary).
PASSES_SUFFIX = "-passes"


def run_passes(
    session: TrackingSession, outputs: RunOutputs, source: Any, request: RunRequest
) -> TrackSummary:
    """Passes mode (see the module): the passes write mask PNGs, then the rendering pass."""
    options = request.options
    if options.heatmap:
        raise ValueError(HEATMAP_REFUSAL)
    if request.start or request.max_frames is not None:
        raise ValueError(
            "--start and --max-frames work with a first-frame --mask or --target only, not with "
            "prompts on other frames, --point, --box or --direction backward"
        )
    out = outputs.folder
    # the passes' DAVIS PNGs: moved into place as masks/, or only read by the rendering pass
    masks_tmp = outputs.temporary(f"{MASKS_DIR}{PASSES_SUFFIX}", folder=True)
    prompts_tmp = outputs.temporary(PROMPT_MASKS_DIR, folder=True)
    if request.save_prompt_masks:
        _write_prompt_masks(prompts_tmp, session)
    masks_tmp.mkdir()
    status, error, records = _track(session, masks_tmp, request)
    written: dict[str, str] = {}
    rendered = None
    if status != RunStatus.INTERRUPTED:
        status, error, written, rendered = _render(
            source, outputs, masks_tmp, records, session, status, error, request
        )
    if rendered is None:  # interrupted before the rendering pass: the input's facts
        with open_source(source, fps=request.fps, prefetch=0) as rendered:
            pass
    partial = status != RunStatus.COMPLETE
    moves: list[tuple[Path, Path]] = []
    if options.save_masks and options.mask_format == "davis":
        final = out / f"{MASKS_DIR}{PARTIAL_SUFFIX if partial else ''}"
        moves.append((masks_tmp, final))
        written = {"masks": final.name, **written}
    if request.save_prompt_masks:
        final = out / partial_name(PROMPT_MASKS_DIR, PARTIAL_SUFFIX if partial else "")
        moves.append((prompts_tmp, final))
        written["prompt_masks"] = final.name
    object_ids = sorted({*session.object_ids, *session.target_ids})
    summary = TrackSummary(
        out_dir=out,
        status=status,
        frames=len(records),
        object_ids=object_ids,
        seconds=time.perf_counter() - request.began,
        outputs=written,
        error=error,
        finetune={o["id"]: o["finetune"] for r in records.values() for o in r["_finetune"] if o},
        annotation=request.annotation,
        warnings=request.warnings,
    )
    ordered = [_public(records[i], object_ids) for i in sorted(records)]
    extra = {
        "direction": request.direction,
        "prompts": [p.record() for p in session.prompts],
        "annotated_frames": session.annotated_frames,
        "target_ids": session.target_ids,
    }
    outputs.finish(
        summary,
        ordered,
        rendered,
        session.run_record(),
        request.metadata,
        annotated=session.annotated_frames,
        moves=moves,
        extra=extra,
    )
    return summary


def _write_prompt_masks(folder: Path, session: TrackingSession) -> None:
    """``prompt_masks/NNNNN.png`` (into the temporary ``folder``): per annotated frame, the
    label map of its prompts' masks."""
    folder.mkdir()
    for frame in session.annotated_frames:
        labels = np.zeros(session.size, np.uint8)
        for obj_id, mask in sorted(session.masks_on(frame).items()):
            labels[mask] = obj_id
        write_label_png(folder / MASK_NAME_FORMAT.format(frame), labels)


def _read_labels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image, dtype=np.uint8).copy()


def _track(
    session: TrackingSession, masks_tmp: Path, request: RunRequest
) -> tuple[RunStatus, str | None, dict[int, dict[str, Any]]]:
    """Run the passes, writing each result's mask PNG (merged with an earlier pass's)."""
    records: dict[int, dict[str, Any]] = {}

    def take(result: SessionResult) -> None:
        _write_result(masks_tmp, result, records)

    status, error = propagate_into(session, request, take)
    return status, error, records


def _write_result(masks_tmp: Path, result: SessionResult, records: dict[int, dict]) -> None:
    path = masks_tmp / MASK_NAME_FORMAT.format(result.index)
    labels = result.labels
    if path.exists():
        earlier = _read_labels(path)
        labels = np.where(earlier == BACKGROUND_ID, labels, earlier).astype(np.uint8)
    write_label_png(path, labels)
    record = records.setdefault(
        result.index, {"index": result.index, "directions": [], "objects": {}, "_finetune": []}
    )
    record["directions"].append(result.direction)
    public = frame_record(result)
    record["keyframe"] = record.get("keyframe", False) or public["keyframe"]
    if "rekey" in public:
        record["rekey"] = public["rekey"]
    for obj_id, entry in public["objects"].items():
        entry["direction"] = result.direction
        entry["annotated"] = int(obj_id) in result.annotated
        record["objects"][obj_id] = entry
    record["_finetune"] += [
        {"id": o.obj_id, "finetune": o.finetune} for o in result.objects if o.finetune
    ]
    points = record.setdefault("_points", {})  # drawn by the rendering pass with --points
    points.update({o.obj_id: (o.points, o.point_labels) for o in result.objects if o.present})
    if len(record["directions"]) > 1:  # areas and boxes after the merge
        for obj_id, entry in record["objects"].items():
            entry["area"], entry["bbox"] = _area_and_box(labels == int(obj_id))


def _area_and_box(mask: np.ndarray) -> tuple[int, list[int] | None]:
    """Pixels of an (H, W) bool mask and its inclusive [x0, y0, x1, y1] box (None if empty)."""
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if rows.size == 0:
        return 0, None
    return int(mask.sum()), [int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])]


def _render(
    source: Any,
    outputs: RunOutputs,
    masks_tmp: Path,
    records: dict[int, dict[str, Any]],
    session: TrackingSession,
    status: RunStatus,
    error: str | None,
    request: RunRequest,
) -> tuple[RunStatus, str | None, dict[str, str], FrameSource]:
    """Decode the input in frame order; give every frame its mask PNG (empty where no pass
    reached it) and encode the overlay and masked videos from them."""
    ids = sorted({*session.object_ids, *session.target_ids})
    # DAVIS masks are the passes' own PNGs (moved into place); other formats are written here
    options = request.options
    videos = dataclasses.replace(
        options, save_masks=options.save_masks and options.mask_format != "davis"
    )
    with open_source(source, fps=request.fps) as frames:
        wanted = videos.overlay or videos.masked_video != "none" or videos.report
        annotated = session.annotated_frames
        sink = None
        if wanted or videos.save_masks:
            sink = outputs.open_sink(frames, videos, object_ids=ids, annotated=annotated)
        try:
            for frame in frames:
                path = masks_tmp / MASK_NAME_FORMAT.format(frame.index)
                if path.exists():
                    labels = _read_labels(path)
                else:
                    labels = np.zeros(frames.size, np.uint8)
                    write_label_png(path, labels)
                record = records.setdefault(
                    frame.index,
                    {"index": frame.index, "directions": [], "objects": {}, "_finetune": []},
                )
                record["time"] = frame.time
                if sink is not None:
                    points = record.get("_points", {})
                    objects = [
                        _object_result(i, record["objects"].get(str(i)), points.get(i)) for i in ids
                    ]
                    sink.put(FrameResult(frame.index, frame.time, labels, objects, frame.rgb))
                if request.on_stage is not None:
                    request.on_stage(RENDER_STAGE, frame.index)
        except VideoDecodeError as exc:
            status, error = RunStatus.PARTIAL, error or str(exc)
        except KeyboardInterrupt:
            status, error = RunStatus.INTERRUPTED, "interrupted by the user"
        written = sink.finish(partial=status != RunStatus.COMPLETE) if sink is not None else {}
    return status, error, written, frames


def _object_result(
    obj_id: int,
    entry: dict[str, Any] | None,
    points: tuple[np.ndarray, np.ndarray] | None = None,
) -> ObjectResult:
    """An object's result on a frame from its record (absent where no pass tracked it), for
    the rendering pass (legend, report, scores of the mask formats, prompt points)."""
    if entry is None:
        return ObjectResult(
            obj_id, present=False, score=0.0, area=0, bbox=None, peak_similarity=float("nan")
        )
    bbox = tuple(entry["bbox"]) if entry["bbox"] is not None else None
    score, peak = entry["score"], entry["peak_similarity"]  # None: carried by optical flow
    result = ObjectResult(
        obj_id,
        present=entry["present"],
        score=float("nan") if score is None else float(score),
        area=entry["area"],
        bbox=bbox,
        peak_similarity=float("nan") if peak is None else float(peak),
        annotated=entry["annotated"],
    )
    if points is not None:
        result.points, result.point_labels = points
    return result


def _public(record: dict[str, Any], object_ids: list[int]) -> dict[str, Any]:
    """The results.json entry of a frame: every object, absent where no pass tracked it."""
    objects = {}
    for obj_id in object_ids:
        entry = record["objects"].get(str(obj_id))
        if entry is None:
            entry = {
                "present": False,
                "score": None,
                "area": 0,
                "bbox": None,
                "peak_similarity": None,
                "updated": False,
                "lost": False,
                "reacquired": False,
                "direction": UNTRACKED,
                "annotated": False,
            }
        objects[str(obj_id)] = entry
    public = {
        "index": record["index"],
        "time": record.get("time"),
        "directions": record["directions"] or [UNTRACKED],
    }
    # whether SAM ran on the frame (False: masks carried by optical flow); absent if untracked
    public.update({key: record[key] for key in ("keyframe", "rekey") if key in record})
    return {**public, "objects": objects}
