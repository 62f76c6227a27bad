"""Track a video from prompts on any frames (masks, clicks, boxes) into an output folder.

:func:`track_prompts_to_folder` is what ``track`` runs when it is given ``--point``, ``--box``,
``--mask PATH@FRAME`` on another frame than 0, or ``--direction backward``; a single mask of the
first frame goes through :func:`persam_video.apps.track.track_to_folder`, exactly as before.

Data flow, with flat memory:

1. the prompts become masks (clicks and boxes by SAM on their frame, before anything is
   written; a bad prompt is one line);
2. :class:`~persam_video.video.session.VideoSession` propagates them forward and/or backward;
   each result's mask PNG is written as it comes, out of frame order (a frame reached by both
   passes, with different objects, is merged with the PNG already written: the earlier pass
   keeps its pixels);
3. a rendering pass decodes the input in frame order and encodes the overlay and masked videos
   from the written masks (input frame rate, timestamps and audio as ``track_to_folder``);
   frames no pass reached get an empty mask.

Interrupted runs keep the partial contract of ``track_to_folder`` (``masks.partial/``,
``results.partial.json``, the last complete run left in place).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from persam_video.apps.track import (
    MASKS_DIR,
    PARTIAL_SUFFIX,
    PROMPT_MASKS_DIR,
    OutputOptions,
    OutputSink,
    RunStatus,
    TrackSummary,
    check_inputs_survive,
    frame_record,
    load_first_mask,
    partial_name,
    replaced_outputs,
    report_name,
    results_document,
    stage_final_files,
    track_folder,
)
from persam_video.atomic import OutputClaim, commit, discard, temp_path
from persam_video.io import FrameSource, VideoDecodeError, open_source, write_label_png
from persam_video.io.mask_formats import MASK_NAME_FORMAT
from persam_video.io.seekable import SeekableFrames, open_seekable
from persam_video.labels import BACKGROUND_ID
from persam_video.persam import Target
from persam_video.persam.prompts import PromptError, check_box, check_points
from persam_video.progress import progress_bar
from persam_video.video import FrameResult, ObjectResult, VideoTracker
from persam_video.video.session import (
    BACKWARD,
    FORWARD,
    Direction,
    SessionResult,
    VideoSession,
    check_every_frame,
)

PromptKind = Literal["mask", "point", "neg-point", "box"]
#: Called once per frame result of the passes (``"track"``, frame index) and per frame of the
#: rendering pass (``"render"``, frame index); an exception it raises stops the run as any
#: other (temporaries removed, the folder as it was), so a caller can cancel through it.
FrameHook = Callable[[str, int], None]
#: The stages a :data:`FrameHook` is told of.
TRACK_STAGE, RENDER_STAGE = "track", "render"
#: What results.json says of a frame no pass reached.
UNTRACKED = "none"


#: Name suffix of the working folder of the passes' mask PNGs (a hidden temporary).
PASSES_SUFFIX = "-passes"


@dataclass(frozen=True)
class PromptSpec:
    """One prompt as the command line gives it (``--mask``, ``--point``, ``--neg-point``,
    ``--box``)."""

    kind: PromptKind
    #: Frame index (0-based, decoding order).
    frame: int
    #: Object id (None for a mask file, whose values are the ids).
    obj_id: int | None = None
    #: (x, y) of a click or (x0, y0, x1, y1) of a box, in frame pixels.
    values: tuple[float, ...] = ()
    #: The mask file of a ``mask`` prompt.
    path: str | None = None
    #: The text given, for messages.
    text: str = ""

    @property
    def option(self) -> str:
        return f"--{self.kind}"


def needs_prompt_path(specs: list[PromptSpec], direction: str) -> bool:
    """Whether a run needs :func:`track_prompts_to_folder` (else a single first-frame mask or
    saved targets alone: :func:`~persam_video.apps.track.track_to_folder`)."""
    if direction == BACKWARD:
        return True
    return any(s.kind != "mask" or s.frame != 0 for s in specs) or len(specs) > 1


def check_specs(specs: list[PromptSpec]) -> None:
    """Rules that need no frame: one mask file per frame (before anything is read)."""
    masks: dict[int, str] = {}
    for spec in specs:
        if spec.kind == "mask":
            if spec.frame in masks:
                raise ValueError(
                    f"two masks for frame {spec.frame} ({masks[spec.frame]} and {spec.path}); "
                    "give one label map per frame (several objects go in one mask)"
                )
            masks[spec.frame] = spec.path or ""


def check_geometry(
    specs: list[PromptSpec],
    size: tuple[int, int],
    num_frames: int | None,
    taken_ids: list[int] | None = None,
) -> None:
    """What can be checked before the model is loaded: frames within the video, clicks and
    boxes inside the (H, W) frame, ids not taken by saved targets."""
    taken = set(taken_ids or [])
    for spec in specs:
        shown = f"{spec.option} {spec.text}"
        if num_frames is not None and spec.frame >= num_frames:
            raise ValueError(
                f"{shown}: frame {spec.frame} is beyond the video, which has {num_frames} frames "
                f"(0..{num_frames - 1})"
            )
        if spec.obj_id in taken:
            raise ValueError(
                f"{shown}: object id {spec.obj_id} is --target number {spec.obj_id}; give the "
                "prompt another id (ID=...)"
            )
        try:
            if spec.kind == "box":
                check_box(spec.values, size)
            elif spec.kind != "mask":
                check_points([spec.values], [1], size)
        except PromptError as exc:
            raise ValueError(f"{shown}: {exc}") from None


def build_session(
    tracker: VideoTracker,
    frames: SeekableFrames,
    specs: list[PromptSpec],
    *,
    targets: list[tuple[int, Target]] | None = None,
    resize_mask: bool = False,
) -> VideoSession:
    """A session with every prompt of ``specs`` added (clicks and boxes of one object on one
    frame make one SAM prompt). Errors name the option that caused them."""
    check_specs(specs)
    session = VideoSession(tracker, frames)
    for obj_id, target in targets or []:
        session.add_target(obj_id, target)
    count = frames.num_frames
    for spec in specs:
        if count is not None and spec.frame >= count:
            raise ValueError(
                f"{spec.option} {spec.text}: frame {spec.frame} is beyond the video, which has "
                f"{count} frames (0..{count - 1})"
            )
    grouped: dict[tuple[int, int], list[PromptSpec]] = {}
    for spec in specs:
        if spec.kind == "mask":
            try:
                annotation = load_first_mask(spec.path, frames.size, resize=resize_mask)
                session.add_labels(spec.frame, annotation, source=spec.path)
            except ValueError as exc:
                raise ValueError(f"--mask {spec.text}: {exc}") from None
        else:
            grouped.setdefault((spec.frame, spec.obj_id), []).append(spec)
    for (frame, obj_id), group in grouped.items():
        boxes = [s for s in group if s.kind == "box"]
        if len(boxes) > 1:
            raise ValueError(
                f"--box {boxes[1].text}: object {obj_id} has two boxes on frame {frame}"
            )
        clicks = [s for s in group if s.kind != "box"]
        points = [s.values for s in clicks]
        labels = [0 if s.kind == "neg-point" else 1 for s in clicks]
        box = boxes[0].values if boxes else None
        shown = " ".join(f"{s.option} {s.text}" for s in group)
        try:
            session.add_points(frame, obj_id, points, labels, box=box)
        except ValueError as exc:
            raise ValueError(f"{shown}: {exc}") from None
    return session


def track_prompts_to_folder(
    tracker: VideoTracker,
    source: str | os.PathLike[str] | Iterable[np.ndarray],
    specs: list[PromptSpec],
    out_dir: str | os.PathLike[str],
    *,
    direction: Direction = "both",
    targets: list[tuple[int, Target]] | None = None,
    options: OutputOptions | None = None,
    resize_mask: bool = False,
    fps: Any = None,
    progress: bool = True,
    metadata: dict[str, Any] | None = None,
    save_prompt_masks: bool = False,
    on_frame: FrameHook | None = None,
) -> TrackSummary:
    """Track the objects prompted by ``specs`` (and saved ``targets``, as (id, target) pairs)
    through ``source`` and write the outputs to ``out_dir`` (see the module docstring).
    ``on_frame`` (a :data:`FrameHook`) follows the progress and may stop the run by raising.

    The output folder follows ``track_to_folder``'s contract: locked while the run lasts, stale
    temporaries of dead runs removed, only earlier track runs' outputs replaced, every output
    moved into place together at the end (results.json last).

    Returns:
        A :class:`~persam_video.apps.track.TrackSummary`; ``status`` as ``track_to_folder``.
    """
    options = options or OutputOptions()
    if options.heatmap:
        raise ValueError(
            "--heatmap works with a first-frame --mask or --target only: the passes of a "
            "prompted run keep no similarity maps"
        )
    check_every_frame(tracker.config)
    mask_files = [s.path for s in specs if s.path is not None]
    check_inputs_survive(out_dir, [source, *mask_files])
    began = time.perf_counter()
    with open_seekable(source, fps=fps) as frames:
        session = build_session(tracker, frames, specs, targets=targets, resize_mask=resize_mask)
        with track_folder(out_dir) as claim:
            return _run_locked(
                tracker,
                session,
                source,
                claim,
                direction,
                options,
                fps,
                progress,
                metadata or {},
                save_prompt_masks,
                began,
                on_frame,
            )


def _run_locked(
    tracker: VideoTracker,
    session: VideoSession,
    source: Any,
    claim: OutputClaim,
    direction: Direction,
    options: OutputOptions,
    fps: Any,
    progress: bool,
    metadata: dict[str, Any],
    save_prompt_masks: bool,
    began: float,
    on_frame: FrameHook | None = None,
) -> TrackSummary:
    """:func:`track_prompts_to_folder` once the output folder is locked and claimed."""
    out = claim.folder
    # the passes' DAVIS PNGs: moved into place as masks/, or only read by the rendering pass
    masks_tmp = temp_path(out / f"{MASKS_DIR}{PASSES_SUFFIX}", folder=True)
    prompts_tmp = temp_path(out / PROMPT_MASKS_DIR, folder=True)
    temporaries = [masks_tmp, prompts_tmp]
    sink = None
    try:
        if save_prompt_masks:
            _write_prompt_masks(prompts_tmp, session)
        masks_tmp.mkdir()
        status, error, records = _track(session, masks_tmp, direction, progress, on_frame)
        outputs: dict[str, str] = {}
        rendered = None
        if status != RunStatus.INTERRUPTED:
            status, error, sink, outputs, rendered = _render(
                source, fps, out, masks_tmp, options, records, session, status, error, on_frame
            )
        if rendered is None:  # interrupted before the rendering pass: the input's facts
            with open_source(source, fps=fps, prefetch=0) as rendered:
                pass
        partial = status != RunStatus.COMPLETE
        moves: list[tuple[Path, Path]] = []
        if options.save_masks and options.mask_format == "davis":
            final = out / f"{MASKS_DIR}{PARTIAL_SUFFIX if partial else ''}"
            moves.append((masks_tmp, final))
            outputs = {"masks": final.name, **outputs}
        if save_prompt_masks:
            final = out / partial_name(PROMPT_MASKS_DIR, PARTIAL_SUFFIX if partial else "")
            moves.append((prompts_tmp, final))
            outputs["prompt_masks"] = final.name
        object_ids = sorted({*session.object_ids, *session.target_ids})
        summary = TrackSummary(
            out_dir=out,
            status=status,
            frames=len(records),
            object_ids=object_ids,
            seconds=time.perf_counter() - began,
            outputs=outputs,
            error=error,
            finetune={
                o["id"]: o["finetune"] for r in records.values() for o in r["_finetune"] if o
            },
        )
        ordered = [_public(records[i], object_ids) for i in sorted(records)]
        extra = {
            "direction": direction,
            "prompts": [p.record() for p in session.prompts],
            "annotated_frames": session.annotated_frames,
            "target_ids": session.target_ids,
        }
        key_frames = sink.key_frames if sink is not None else None
        if key_frames is not None:
            outputs["report"] = report_name(status)
        document = results_document(summary, ordered, rendered, tracker, metadata, extra)
        last = stage_final_files(out, document, key_frames, session.annotated_frames)
        if sink is not None:
            sink.commit(claim, moves + last, partial=partial)
        else:
            commit(moves + last, remove=replaced_outputs(out, partial=partial), claim=claim)
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    finally:
        for path in temporaries:  # what was not moved into place (the passes' working copy)
            discard(path)
    return summary


def _write_prompt_masks(folder: Path, session: VideoSession) -> None:
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
    session: VideoSession,
    masks_tmp: Path,
    direction: Direction,
    progress: bool,
    on_frame: FrameHook | None = None,
) -> tuple[RunStatus, str | None, dict[int, dict[str, Any]]]:
    """Run the passes, writing each result's mask PNG (merged with an earlier pass's)."""
    records: dict[int, dict[str, Any]] = {}
    status, error = RunStatus.COMPLETE, None
    total = expected_results(session, direction)
    bar = progress_bar(total=total, unit="frame", enabled=progress, desc="tracking")
    try:
        with bar:
            for result in session.propagate(direction):
                _write_result(masks_tmp, result, records)
                bar.update(1)
                if on_frame is not None:
                    on_frame(TRACK_STAGE, result.index)
    except VideoDecodeError as exc:
        status, error = RunStatus.PARTIAL, str(exc)
    except KeyboardInterrupt:
        status, error = RunStatus.INTERRUPTED, "interrupted by the user"
    return status, error, records


def expected_results(session: VideoSession, direction: Direction) -> int | None:
    """How many results ``session.propagate(direction)`` yields (the progress bar's total):
    a forward pass from the first prompted frame (frame 0 with saved targets) to the end, and
    a backward pass from the last prompted frame (``backward``) or from the objects' first
    prompted frames (``both``) to frame 0; None when the frame count is not known."""
    total = session.frames.num_frames
    if total is None:
        return None
    prompted = session.annotated_frames
    forward = direction in (FORWARD, "both") or not prompted
    count = total - (0 if session.target_ids or not prompted else prompted[0]) if forward else 0
    if prompted and direction == BACKWARD:
        count += prompted[-1] + 1
    elif prompted and direction == "both":
        count += max(session.first_frames().values())
    return count


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
    for obj_id, entry in frame_record(result)["objects"].items():
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
    fps: Any,
    out: Path,
    masks_tmp: Path,
    options: OutputOptions,
    records: dict[int, dict[str, Any]],
    session: VideoSession,
    status: RunStatus,
    error: str | None,
    on_frame: FrameHook | None = None,
) -> tuple[RunStatus, str | None, OutputSink | None, dict[str, str], FrameSource]:
    """Decode the input in frame order; give every frame its mask PNG (empty where no pass
    reached it) and encode the overlay and masked videos from them."""
    ids = sorted({*session.object_ids, *session.target_ids})
    # DAVIS masks are the passes' own PNGs (moved into place); other formats are written here
    videos = dataclasses.replace(
        options, save_masks=options.save_masks and options.mask_format != "davis"
    )
    with open_source(source, fps=fps) as frames:
        wanted = videos.overlay or videos.masked_video != "none" or videos.report
        annotated = frozenset(session.annotated_frames)
        sink = (
            OutputSink(out, frames, videos, object_ids=ids, annotated=annotated)
            if (wanted or videos.save_masks)
            else None
        )
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
                if on_frame is not None:
                    on_frame(RENDER_STAGE, frame.index)
        except VideoDecodeError as exc:
            status, error = RunStatus.PARTIAL, error or str(exc)
        except KeyboardInterrupt:
            status, error = RunStatus.INTERRUPTED, "interrupted by the user"
        except BaseException:
            if sink is not None:
                sink.abort()
            raise
        outputs = sink.finish(partial=status != RunStatus.COMPLETE) if sink is not None else {}
    return status, error, sink, outputs, frames


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
    peak = entry["peak_similarity"]
    return ObjectResult(
        obj_id,
        present=entry["present"],
        score=float(entry["score"]),
        area=entry["area"],
        bbox=bbox,
        peak_similarity=float("nan") if peak is None else float(peak),
        annotated=entry["annotated"],
        **({"points": points[0], "point_labels": points[1]} if points is not None else {}),
    )


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
    return {
        "index": record["index"],
        "time": record.get("time"),
        "directions": record["directions"] or [UNTRACKED],
        "objects": objects,
    }
