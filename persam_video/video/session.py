"""A prompting session over one video: annotate any frame, then propagate forward and backward.

The vocabulary follows SAM 2's video predictor where it fits (``add_new_mask``,
``add_new_points_or_box``, ``propagate_in_video(reverse=...)``), on PerSAM's tracker:

>>> session = VideoSession(tracker, "clip.mp4")
>>> session.add_points(20, obj_id=1, points=[(120, 80)])       # a click on frame 20
>>> session.add_box(35, obj_id=2, box=(10, 10, 60, 90))        # a box on frame 35
>>> for result in session.propagate("both"):
...     result.index, result.direction, result.labels          # in the order computed

Rules (what :meth:`VideoSession.propagate` computes):

* ``forward``: each object is tracked from its first annotated frame to the end; a later
  annotation of the object replaces its tracked mask on that frame and re-seeds it from there on
  (:meth:`VideoTracker.step_features` with ``annotations``). Before its first annotated frame an
  object is not tracked (absent).
* ``backward``: the mirror image: each object from its last annotated frame back to frame 0,
  re-seeded on its earlier annotations.
* ``both``: the forward pass, then a backward pass in which each object goes from its *first*
  annotated frame back to frame 0 (its later annotations are the forward pass's). The backward
  pass yields, for a frame, only the objects it tracked there, so a frame between two objects'
  first annotations comes twice, once per direction, with disjoint objects:
  :func:`merge_labels` joins them.

Saved targets (:meth:`VideoSession.add_target`) may join under other ids: they are searched in
every frame of the forward pass, which then starts at frame 0 (with targets, the presence
thresholds apply to every object of that pass, as in :meth:`VideoTracker.track_targets`).

Clicks and boxes become masks right away (:func:`persam_video.persam.prompts.prompt_mask` on the
frame's features: SAM's own prompt encoder and mask decoder). The session keeps only its prompts
and their masks; the backward pass reads frames in reverse chunks
(:meth:`~persam_video.io.seekable.SeekableFrames.backward`) and the forward pass streams them,
so memory does not depend on the video's length.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from persam_video.config import PerSAMConfig
from persam_video.io.frame import Frame
from persam_video.io.seekable import DEFAULT_CHUNK, SeekableFrames, open_seekable
from persam_video.io.streamed import StreamedFrames
from persam_video.labels import BACKGROUND_ID, LabelMap, binary_mask, check_object_id
from persam_video.persam.api import Target
from persam_video.persam.prompts import PromptMask, prompt_mask
from persam_video.video.state import FrameResult, ObjectState, TrackState
from persam_video.video.tracker import VideoTracker, _frames

Direction = Literal["forward", "backward", "both"]
DIRECTIONS: tuple[str, ...] = ("both", "forward", "backward")
FORWARD, BACKWARD = "forward", "backward"
#: The PerSAM engine's name in results.json.
PERSAM_ENGINE = "persam"


@dataclass(frozen=True)
class Prompt:
    """One annotation of one object on one frame, as the user gave it."""

    frame: int
    obj_id: int
    #: ``mask``, ``points``, ``box`` or ``box+points``.
    kind: str
    #: Clicks (x, y) in frame pixels and their labels (1 positive, 0 negative).
    points: tuple[tuple[float, float], ...] = ()
    point_labels: tuple[int, ...] = ()
    #: (x0, y0, x1, y1) in frame pixels, or None.
    box: tuple[float, float, float, float] | None = None
    #: Pixels of the resulting mask.
    area: int = 0
    #: SAM's predicted IoU of the mask made from clicks or a box (None for a mask).
    score: float | None = None
    #: Where the prompt came from (e.g. the mask file), for the record.
    source: str | None = None

    def record(self) -> dict[str, Any]:
        """The prompt as results.json records it."""
        record: dict[str, Any] = {"frame": self.frame, "object": self.obj_id, "kind": self.kind}
        if self.points:
            record["points"] = [list(p) for p in self.points]
            record["point_labels"] = list(self.point_labels)
        if self.box is not None:
            record["box"] = list(self.box)
        if self.source is not None:
            record["source"] = self.source
        record["area"] = self.area
        if self.score is not None:
            record["score"] = round(self.score, 6)
        return record


@dataclass
class SessionResult(FrameResult):
    """A :class:`FrameResult` with the pass that computed it."""

    #: ``forward`` or ``backward``.
    direction: str = FORWARD
    #: Object ids annotated (seeded or corrected) on this frame in this pass.
    annotated: list[int] = field(default_factory=list)


#: Why a session with keyframes refuses prompts on more than one frame, or a backward pass.
KEYFRAMES_REFUSAL = (
    "--keyframes N|auto works when every prompt is on one frame and tracking goes forward from "
    "there (a first-frame --mask, clicks or a box, or --target); prompts on several frames and "
    "backward passes track every frame"
)


def check_keyframes(
    config: PerSAMConfig, frames: Sequence[int], direction: str, *, targets: bool = False
) -> None:
    """The keyframe rule, checkable before the model is loaded: with keyframes
    (``keyframes.mode: auto`` or ``keyframes.interval`` above 1), the prompts (on ``frames``)
    must all be on one frame (frame 0 with saved ``targets``), tracked forward; else one line."""
    if not config.keyframes.active:
        return
    starts = set(frames) | ({0} if targets else set())
    backward = direction == BACKWARD or (direction == "both" and max(starts, default=0) > 0)
    if len(starts) > 1 or backward:
        raise ValueError(KEYFRAMES_REFUSAL)


Source = (
    str | os.PathLike[str] | Sequence[np.ndarray] | np.ndarray | SeekableFrames | StreamedFrames
)


class PromptedSession:
    """What every engine's session shares: its frames, its prompts (masks, clicks, boxes on any
    frame, and saved targets) and the rules of which frames a direction covers. An engine's
    session adds how a click or a box becomes a mask (:meth:`_mask_from_prompt`), what else it
    refuses (:meth:`_check_engine`), and the propagation itself.

    Args:
        source: a video file, a folder of frames, a list or ``(T, H, W, 3)`` array of frames, or
            an open :class:`~persam_video.io.seekable.SeekableFrames` or
            :class:`~persam_video.io.streamed.StreamedFrames` (a stream read once, forward:
            prompts on its first frame only); closed with the session.
        fps: frame rate of a folder or sequence.
        chunk: frames decoded at once by the backward pass.
    """

    def __init__(self, source: Source, *, fps: Any = None, chunk: int = DEFAULT_CHUNK) -> None:
        self.frames = (
            source
            if isinstance(source, (SeekableFrames, StreamedFrames))
            else open_seekable(source, fps=fps)
        )
        self.chunk = chunk
        #: Every prompt, in the order given.
        self.prompts: list[Prompt] = []
        self._masks: dict[int, dict[int, np.ndarray]] = {}  # frame -> object -> (H, W) bool
        self._targets: dict[int, Target] = {}  # saved targets, searched in every frame

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the frames."""
        return self.frames.size

    @property
    def annotated_frames(self) -> list[int]:
        """Frames with at least one prompt, in increasing order."""
        return sorted(self._masks)

    @property
    def object_ids(self) -> list[int]:
        """Ids of the objects prompted so far, sorted (saved targets not included)."""
        return sorted({p.obj_id for p in self.prompts})

    @property
    def target_ids(self) -> list[int]:
        """Ids of the saved targets added, sorted."""
        return sorted(self._targets)

    def add_target(self, obj_id: int, target: Target) -> None:
        """Search a saved target in every frame as object ``obj_id`` (as
        :meth:`VideoTracker.track_targets`): the forward pass then starts at frame 0, and the
        target takes no part in the backward pass. Its id cannot also be prompted."""
        obj_id = check_object_id(obj_id)
        if obj_id in self._targets or obj_id in self.object_ids:
            raise ValueError(f"object id {obj_id} is taken: give the target another id")
        self._targets[obj_id] = target

    def masks_on(self, frame: int) -> dict[int, np.ndarray]:
        """The prompted (H, W) bool masks of frame ``frame``, by object id."""
        return dict(self._masks.get(frame, {}))

    def close(self) -> None:
        self.frames.close()

    def __enter__(self) -> PromptedSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ prompts
    def _check_new(self, frame: int, obj_id: int) -> tuple[int, int]:
        obj_id = check_object_id(obj_id)
        if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)) or frame < 0:
            raise ValueError(f"frame {frame!r}: expected a frame index >= 0")
        count = self.frames.num_frames
        if count is not None and frame >= count:
            raise ValueError(
                f"frame {frame} is beyond the video: it has {count} frames (0..{count - 1})"
            )
        if obj_id in self._targets:
            raise ValueError(f"object id {obj_id} is a saved target: prompt another id")
        if obj_id in self._masks.get(int(frame), {}):
            raise ValueError(f"object {obj_id} already has a prompt on frame {frame}")
        return int(frame), obj_id

    def _store(self, prompt: Prompt, mask: np.ndarray) -> None:
        self._masks.setdefault(prompt.frame, {})[prompt.obj_id] = mask
        self.prompts.append(prompt)

    def add_mask(
        self, frame: int, obj_id: int, mask: np.ndarray, *, source: str | None = None
    ) -> np.ndarray:
        """Annotate object ``obj_id`` on frame ``frame`` with an (H, W) mask (bool, {0, 1} or
        {0, 255}); return it as (H, W) bool."""
        frame, obj_id = self._check_new(frame, obj_id)
        binary = binary_mask(mask, self.size)
        if not binary.any():
            raise ValueError(f"the mask of object {obj_id} on frame {frame} is empty")
        self._store(Prompt(frame, obj_id, "mask", area=int(binary.sum()), source=source), binary)
        return binary

    def add_labels(self, frame: int, labels: np.ndarray | LabelMap, *, source: str | None = None):
        """Annotate every object of an (H, W) label map on frame ``frame`` (void is ignored);
        return the ids added."""
        annotation = LabelMap.check(labels, self.size)
        for obj_id in annotation.ids:
            self._check_new(frame, obj_id)
        for obj_id in annotation.ids:
            self.add_mask(frame, obj_id, annotation.mask(obj_id), source=source)
        return list(annotation.ids)

    def add_points(
        self,
        frame: int,
        obj_id: int,
        points: Sequence[Sequence[float]] | np.ndarray,
        labels: Sequence[int] | np.ndarray | None = None,
        *,
        box: Sequence[float] | None = None,
    ) -> PromptMask:
        """Annotate an object with clicks (N, 2) (x, y) (labels: 1 positive, 0 negative;
        default all positive) and optionally a box; the engine's model makes the mask on that
        frame."""
        return self._prompted(frame, obj_id, points, labels, box)

    def add_box(
        self,
        frame: int,
        obj_id: int,
        box: Sequence[float],
        *,
        points: Sequence[Sequence[float]] | np.ndarray | None = None,
        labels: Sequence[int] | np.ndarray | None = None,
    ) -> PromptMask:
        """Annotate an object with an (x0, y0, x1, y1) box (and optionally clicks)."""
        return self._prompted(frame, obj_id, points, labels, box)

    def _prompted(
        self,
        frame: int,
        obj_id: int,
        points: Sequence[Sequence[float]] | np.ndarray | None,
        labels: Sequence[int] | np.ndarray | None,
        box: Sequence[float] | None,
    ) -> PromptMask:
        frame, obj_id = self._check_new(frame, obj_id)
        points = np.zeros((0, 2)) if points is None else np.asarray(points, np.float64)
        points = points.reshape(-1, 2)
        if labels is None:
            labels = np.ones(len(points), np.int64)
        made = self._mask_from_prompt(frame, points, np.asarray(labels), box)
        kind = "points" if box is None else ("box+points" if len(points) else "box")
        prompt = Prompt(
            frame,
            obj_id,
            kind,
            points=tuple((float(x), float(y)) for x, y in points),
            point_labels=tuple(int(v) for v in np.asarray(labels).reshape(-1)),
            box=None if box is None else tuple(float(v) for v in box),  # type: ignore[arg-type]
            area=int(made.mask.sum()),
            score=made.score,
        )
        if not made.mask.any():
            raise ValueError(
                f"SAM turns the {kind} prompt of object {obj_id} on frame {frame} into an empty "
                "mask; click inside the object or draw a box around it"
            )
        self._store(prompt, made.mask)
        return made

    def _mask_from_prompt(
        self, frame: int, points: np.ndarray, labels: np.ndarray, box: Sequence[float] | None
    ) -> PromptMask:
        """The mask the engine's model makes of clicks (N, 2) and an optional box on ``frame``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ propagation
    def first_frames(self) -> dict[int, int]:
        """Per object id, its first annotated frame."""
        return {i: min(f for f, objs in self._masks.items() if i in objs) for i in self.object_ids}

    def last_frames(self) -> dict[int, int]:
        """Per object id, its last annotated frame."""
        return {i: max(f for f, objs in self._masks.items() if i in objs) for i in self.object_ids}

    def backward_needed(self, direction: Direction = "both") -> bool:
        """Whether a backward pass has frames to track (False when every object starts on
        frame 0)."""
        starts = self.last_frames() if direction == BACKWARD else self.first_frames()
        return any(f > 0 for f in starts.values())

    def check_direction(self, direction: Direction) -> None:
        """Refuse, in one line, what this session cannot propagate: an unknown direction, no
        prompt yet, a backward pass over a stream, and what the engine refuses."""
        if direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {direction!r}; use {', '.join(DIRECTIONS)}")
        if not self._masks and not self._targets:
            raise ValueError("nothing to propagate: add a mask, points or a box first")
        backward = self._masks and (
            direction == BACKWARD or (direction == "both" and self.backward_needed())
        )
        if isinstance(self.frames, StreamedFrames) and backward:
            self.frames.backward(0)  # raises its one-line refusal
        self._check_engine(direction)

    def _check_engine(self, direction: Direction) -> None:
        """What else this engine's session refuses (one line, ValueError)."""

    def in_frame_order(self, direction: Direction) -> bool:
        """Whether :meth:`propagate` yields one result per frame in frame order: one forward
        pass from frame 0 (saved targets, or every object prompted first on frame 0)."""
        starts_at_zero = bool(self._targets) or self.annotated_frames[:1] == [0]
        return direction != BACKWARD and starts_at_zero and not self.backward_needed()

    def expected_results(self, direction: Direction) -> int | None:
        """How many results :meth:`propagate` yields (a progress bar's total): a forward pass
        from the first prompted frame (frame 0 with saved targets) to the end, and a backward
        pass from the last prompted frame (``backward``) or from the objects' first prompted
        frames (``both``) to frame 0; None when the frame count is not known."""
        total = self.frames.num_frames
        if total is None:
            return None
        prompted = self.annotated_frames
        forward = direction in (FORWARD, "both") or not prompted
        count = total - (0 if self.target_ids or not prompted else prompted[0]) if forward else 0
        if prompted and direction == BACKWARD:
            count += prompted[-1] + 1
        elif prompted and direction == "both":
            count += max(self.first_frames().values())
        return count


class VideoSession(PromptedSession):
    """Prompts on any frame of one video, and their propagation by PerSAM's tracker (see the
    module docstring).

    Args:
        tracker: the :class:`VideoTracker` (model and config).
        source, fps, chunk: as :class:`PromptedSession`.
    """

    def __init__(
        self,
        tracker: VideoTracker,
        source: Source,
        *,
        fps: Any = None,
        chunk: int = DEFAULT_CHUNK,
    ) -> None:
        super().__init__(source, fps=fps, chunk=chunk)
        self.tracker = tracker

    def __enter__(self) -> VideoSession:
        return self

    def _mask_from_prompt(
        self, frame: int, points: np.ndarray, labels: np.ndarray, box: Sequence[float] | None
    ) -> PromptMask:
        """SAM's own prompt encoder and mask decoder on the frame's features."""
        feats = self.tracker.persam.encode(self.frames.read(frame).rgb)
        return prompt_mask(self.tracker.sam, feats, points, labels, box)

    def _check_engine(self, direction: Direction) -> None:
        """Keyframes with prompts on several frames or a backward pass
        (:func:`check_keyframes`)."""
        check_keyframes(
            self.tracker.config, self.annotated_frames, direction, targets=bool(self._targets)
        )

    def run_record(self) -> dict[str, Any]:
        """What results.json records of the engine (:func:`engine_record`)."""
        return engine_record(self.tracker)

    def propagate(self, direction: Direction = "both") -> Iterator[SessionResult]:
        """Track the prompted objects; yield results in the order computed (see the module).

        Raises:
            ValueError: what :meth:`check_direction` refuses.
        """
        self.check_direction(direction)
        if direction in (FORWARD, "both") or not self._masks:
            yield from self._forward()
        if not self._masks:
            return
        if direction == BACKWARD:
            yield from self._backward(self._masks, keep_seeds=True)
        elif direction == "both":
            firsts = self.first_frames()
            seeds: dict[int, dict[int, np.ndarray]] = {}
            for obj_id, frame in firsts.items():
                seeds.setdefault(frame, {})[obj_id] = self._masks[frame][obj_id]
            yield from self._backward(seeds, keep_seeds=False)

    def _forward(self) -> Iterator[SessionResult]:
        start = 0 if self._targets else min(self._masks)
        objects = [ObjectState.from_target(i, t) for i, t in sorted(self._targets.items())]
        state = TrackState(objects=objects, frame_size=self.size, from_targets=bool(objects))
        if self.tracker.config.keyframes.active:
            yield from self._forward_keyframes(state, start)
            return
        yield from self._run(state, self.frames.forward(start), self._masks, FORWARD, True)

    def _forward_keyframes(self, state: TrackState, start: int) -> Iterator[SessionResult]:
        """The forward pass with keyframes (every prompt on ``start``, see
        :func:`check_keyframes`): SAM on the keyframes, masks carried by optical flow between
        them (:meth:`VideoTracker.track_keyframes`)."""
        tracker, here = self.tracker, self._masks.get(start, {})

        def begin(rgb: np.ndarray, index: int, time: float | None) -> tuple[TrackState, Any]:
            with torch.inference_mode():
                feats = tracker.persam.encode(rgb)
                result = tracker.step_features(
                    state, feats, rgb, index=index, time=time, annotations=here
                )
            return state, result

        for result in tracker.track_keyframes(self.frames.forward(start), begin):
            annotated = sorted(here) if result.index == start else []
            yield _session_result(result, FORWARD, annotated)

    def _backward(
        self, annotations: dict[int, dict[int, np.ndarray]], *, keep_seeds: bool
    ) -> Iterator[SessionResult]:
        start = max(annotations)
        if start == 0 and not keep_seeds:
            return
        state = TrackState(objects=[], frame_size=self.size)
        frames = self.frames.backward(start, 0, chunk=self.chunk)
        yield from self._run(state, frames, annotations, BACKWARD, keep_seeds)

    def _run(
        self,
        state: TrackState,
        frames: Iterator[Frame],
        annotations: dict[int, dict[int, np.ndarray]],
        direction: str,
        keep_seeds: bool,
    ) -> Iterator[SessionResult]:
        """Step the tracker over ``frames`` with the annotations of each frame.

        Without ``keep_seeds``, the objects annotated on a frame are left out of its result (the
        other pass yields them) and a frame with no other object yields nothing.
        """
        tracker = self.tracker
        for rgb, index, time, feats in tracker._encoded(_frames(frames)):
            here = annotations.get(index, {})
            with torch.inference_mode():
                if feats is None:
                    feats = tracker.persam.encode(rgb)
                result = tracker.step_features(
                    state, feats, rgb, index=index, time=time, annotations=here
                )
            objects, labels = result.objects, result.labels
            if not keep_seeds and here:
                objects = [o for o in objects if o.obj_id not in here]
                if not objects:
                    continue
                labels = np.where(np.isin(labels, list(here)), BACKGROUND_ID, labels)
                labels = labels.astype(np.uint8)
            annotated = sorted(i for i in here if keep_seeds)
            yield _session_result(result, direction, annotated, labels=labels, objects=objects)


def _session_result(
    result: FrameResult,
    direction: str,
    annotated: list[int],
    **changes: Any,
) -> SessionResult:
    """``result`` as a :class:`SessionResult` of the pass ``direction`` (``changes``: fields
    replaced, e.g. the labels and objects without another pass's seeds)."""
    fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(FrameResult)}
    return SessionResult(**{**fields, **changes}, direction=direction, annotated=annotated)


def engine_record(tracker: VideoTracker) -> dict[str, Any]:
    """What results.json records of the PerSAM engine: its name, config, device and encoder."""
    return {
        "engine": PERSAM_ENGINE,
        "config": tracker.config.to_dict(),
        "device": str(tracker.sam.device),
        "encoder": tracker.persam.encoder.settings(),
    }


def merge_labels(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Join two (H, W) uint8 label maps of one frame with disjoint objects: ``second``'s objects
    take the pixels ``first`` leaves to the background."""
    return np.where(first == BACKGROUND_ID, second, first).astype(np.uint8)
