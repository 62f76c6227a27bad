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

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from persam_video.apps.outputs import (
    RENDER_STAGE,
    TRACK_STAGE,
    FrameHook,
    OutputOptions,
    RunRequest,
    TrackSummary,
)
from persam_video.apps.passes import HEATMAP_REFUSAL
from persam_video.apps.pipeline import run_session
from persam_video.apps.track import check_inputs_survive, load_first_mask, track_folder
from persam_video.io.seekable import SeekableFrames, open_seekable
from persam_video.persam import Target
from persam_video.persam.prompts import PromptError, check_box, check_points
from persam_video.video import VideoTracker
from persam_video.video.engine import Engine, TrackingSession, as_engine
from persam_video.video.session import BACKWARD, Direction

__all__ = [
    "RENDER_STAGE",
    "TRACK_STAGE",
    "FrameHook",
    "PromptSpec",
    "build_session",
    "check_geometry",
    "check_specs",
    "needs_prompt_path",
    "track_prompts_to_folder",
]

PromptKind = Literal["mask", "point", "neg-point", "box"]


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
    engine: Engine | VideoTracker,
    frames: SeekableFrames,
    specs: list[PromptSpec],
    *,
    targets: list[tuple[int, Target]] | None = None,
    resize_mask: bool = False,
) -> TrackingSession:
    """A session of ``engine`` (a :class:`VideoTracker` is the PerSAM engine) over ``frames``
    with every prompt of ``specs`` added (clicks and boxes of one object on one frame make one
    prompt). Errors name the option that caused them."""
    check_specs(specs)
    session = as_engine(engine).open_session(frames)
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
        if spec.kind == "mask" and spec.path is not None:
            try:
                annotation = load_first_mask(spec.path, frames.size, resize=resize_mask)
                session.add_labels(spec.frame, annotation, source=spec.path)
            except ValueError as exc:
                raise ValueError(f"--mask {spec.text}: {exc}") from None
        elif spec.kind != "mask" and spec.obj_id is not None:
            grouped.setdefault((spec.frame, spec.obj_id), []).append(spec)
        else:
            raise ValueError(f"{spec.option} {spec.text}: a mask needs its file, a click its id")
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
    engine: Engine | VideoTracker,
    source: str | os.PathLike[str] | Sequence[np.ndarray] | np.ndarray,
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
        A :class:`~persam_video.apps.outputs.TrackSummary`; ``status`` as ``track_to_folder``.
    """
    request = RunRequest(
        options=options or OutputOptions(),
        direction=direction,
        progress=progress,
        metadata=metadata or {},
        fps=fps,
        save_prompt_masks=save_prompt_masks,
        on_stage=on_frame,
        began=time.perf_counter(),
    )
    if request.options.heatmap:  # before SAM turns the clicks into masks
        raise ValueError(HEATMAP_REFUSAL)
    engine = as_engine(engine)
    engine.check_plan([s.frame for s in specs], direction, targets=bool(targets))
    mask_files = [s.path for s in specs if s.path is not None]
    check_inputs_survive(out_dir, [source, *mask_files])
    with open_seekable(source, fps=fps) as frames:
        session = build_session(engine, frames, specs, targets=targets, resize_mask=resize_mask)
        with track_folder(out_dir) as claim:
            return run_session(session, claim, source, request)
