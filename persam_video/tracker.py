"""The video tracker: PerSAM per frame, per-object state, momentum, occlusion, fusion.

Data flows one way: frames -> SAM features (once per frame, shared by all objects) -> PerSAM for
every object (:mod:`persam_video.core`, the same code as image mode) -> fusion into one label map
-> per-object state update. :class:`TrackState` holds everything a video needs between frames, so
several videos can be tracked with one :class:`VideoTracker`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from segment_anything.modeling import Sam
from torch import Tensor

from persam_video.config import PerSAMConfig, TrackConfig
from persam_video.core import ExtraPrompt, FrameFeatures, Prediction, mask_box
from persam_video.encoder import FrameEncoder
from persam_video.persam import PerSAM, Target, check_image

#: Label value DAVIS uses for "void" pixels; never an object id here.
VOID_LABEL = 255


@dataclass
class ObjectState:
    """What the tracker remembers about one object between frames."""

    obj_id: int
    #: (C,) embedding from the first frame (the user's annotation).
    first_embedding: Tensor
    #: (C,) current target embedding (momentum-updated).
    embedding: Tensor
    #: Tight (x0, y0, x1, y1) box of the object's mask in the previous frame; None when absent.
    box: tuple[float, float, float, float] | None
    #: Mask area (pixels) when the embedding was last updated (or in the first frame).
    reference_area: int
    present: bool = True
    #: (3,) PerSAM-F mask weights learned on the first frame, or None.
    mask_weights: Tensor | None = None


@dataclass
class ObjectResult:
    """One object on one frame."""

    obj_id: int
    #: Whether the object was found on this frame (its mask may still be empty if fully hidden).
    present: bool
    #: SAM's predicted IoU of the object's mask (1.0 on the annotated frame).
    score: float
    #: Pixels of the object in the fused label map.
    area: int
    #: (x0, y0, x1, y1) inclusive pixel box of the object's pixels, or None when it has none.
    bbox: tuple[int, int, int, int] | None
    #: Highest cosine similarity between the target and the frame's features.
    peak_similarity: float
    #: Whether the target embedding was updated from this frame.
    updated: bool = False
    #: (N, 2) float (x, y) point prompts and (N,) labels used on this frame (empty on frame 0).
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    point_labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))


@dataclass
class FrameResult:
    """The tracker's output for one frame."""

    index: int
    #: Seconds from the start of the stream (the frame's own timestamp for variable frame rate),
    #: or None for a source without a clock.
    time: float | None
    #: (H, W) uint8 label map: 0 background, else the object id.
    labels: np.ndarray
    objects: list[ObjectResult]
    #: (H, W, 3) uint8 RGB frame the result belongs to (a reference, not a copy).
    frame: np.ndarray

    def mask(self, obj_id: int) -> np.ndarray:
        """(H, W) bool mask of one object."""
        return self.labels == obj_id


@dataclass
class TrackState:
    """Everything the tracker carries from one frame of a video to the next."""

    objects: list[ObjectState]
    frame_size: tuple[int, int]
    frames_seen: int = 0
    #: Objects come from saved targets, not from an annotated frame: each frame is searched and
    #: an object counts as present only when confidently found (the absence thresholds apply
    #: even with ``track.occlusion`` off).
    from_targets: bool = False

    @property
    def object_ids(self) -> list[int]:
        return [o.obj_id for o in self.objects]


# --------------------------------------------------------------------------- pure rules
def expand_box(
    box: tuple[float, float, float, float], margin: float, size: tuple[int, int]
) -> tuple[float, float, float, float]:
    """Grow a box by ``margin`` pixels on every side, clipped to [0, W] x [0, H] (official rule)."""
    height, width = size
    x0, y0, x1, y1 = box
    return (
        max(x0 - margin, 0.0),
        max(y0 - margin, 0.0),
        min(x1 + margin, width),
        min(y1 + margin, height),
    )


def box_center(box: tuple[float, float, float, float]) -> tuple[float, float]:
    """Integer centre (x, y) of a box, rounded down as the official code does."""
    return (float(math.floor((box[0] + box[2]) / 2)), float(math.floor((box[1] + box[3]) / 2)))


def fuse(logits: Tensor, obj_ids: list[int], threshold: float = 0.0) -> Tensor:
    """Fuse (K, H, W) mask logits into an (H, W) uint8 label map.

    Each pixel goes to the object with the highest logit when that logit is above ``threshold``
    (SAM's mask threshold), else to the background; objects never overlap.
    """
    height, width = logits.shape[-2:]
    if logits.shape[0] == 0:
        return torch.zeros((height, width), dtype=torch.uint8, device=logits.device)
    best, index = logits.max(dim=0)
    ids = torch.tensor(obj_ids, dtype=torch.uint8, device=logits.device)
    return torch.where(best > threshold, ids[index], torch.zeros_like(ids[index]))


def is_absent(pred: Prediction, cfg: TrackConfig, *, search: bool = False) -> bool:
    """Whether an object counts as not found on this frame.

    Without occlusion handling, only an empty mask means absent, unless ``search`` (looking for
    a saved target) asks for the confidence thresholds anyway.
    """
    if not bool(pred.mask.any()):
        return True
    if not (cfg.occlusion or search):
        return False
    return pred.peak_similarity < cfg.absent_min_similarity or pred.score < cfg.absent_min_score


def should_update(score: float, area: int, reference_area: int, cfg: TrackConfig) -> bool:
    """Whether a prediction is trustworthy enough to update the target embedding."""
    if not cfg.update or area == 0 or reference_area == 0:
        return False
    change = max(area / reference_area, reference_area / area)
    return score >= cfg.update_min_score and change <= cfg.update_max_area_change


def momentum_update(
    previous: Tensor, observed: Tensor, first: Tensor, momentum: float, anchor: float
) -> Tensor:
    """e_t = anchor * e_0 + (1 - anchor) * (momentum * e_{t-1} + (1 - momentum) * observed)."""
    blended = momentum * previous + (1.0 - momentum) * observed
    return anchor * first + (1.0 - anchor) * blended


def label_ids(labels: np.ndarray) -> list[int]:
    """Sorted object ids of a label map (0 and the void label excluded)."""
    ids = np.unique(labels)
    return [int(i) for i in ids if i not in (0, VOID_LABEL)]


# --------------------------------------------------------------------------- tracker
class VideoTracker:
    """Track the objects of a first-frame mask through a video with PerSAM.

    >>> tracker = VideoTracker(load_sam("vit_b"), PerSAMConfig.default())
    >>> for result in tracker.track(frames, first_labels):
    ...     result.labels  # (H, W) uint8 label map
    """

    def __init__(
        self, sam: Sam, config: PerSAMConfig | None = None, encoder: FrameEncoder | None = None
    ) -> None:
        self.persam = PerSAM(sam, config, encoder)

    @property
    def config(self) -> PerSAMConfig:
        return self.persam.config

    @property
    def sam(self) -> Sam:
        return self.persam.sam

    def track(
        self, frames: Iterable[np.ndarray], first_labels: np.ndarray
    ) -> Iterator[FrameResult]:
        """Yield a :class:`FrameResult` per frame; the first frame's result is its annotation.

        Args:
            frames: (H, W, 3) uint8 RGB frames, or objects with ``rgb``, ``index`` and ``time``
                attributes (as yielded by :func:`persam_video.io.open_source`).
            first_labels: (H, W) uint8 label map of the first frame (0 background, 1..K objects).
        """
        state: TrackState | None = None
        for rgb, index, time, feats in self._encoded(_frames(frames)):
            if state is None:
                state, result = self.start(rgb, first_labels, index=index, time=time, feats=feats)
            else:
                result = self._step_encoded(state, rgb, feats, index=index, time=time)
            yield result

    def track_targets(
        self,
        frames: Iterable[np.ndarray],
        targets: list[Target],
        object_ids: list[int] | None = None,
    ) -> Iterator[FrameResult]:
        """Find saved targets in every frame (no annotated frame); yield a result per frame.

        Object ``i`` gets id ``object_ids[i]`` (default ``i + 1``); its mask is empty on frames
        where it is not confidently found.
        """
        ids = object_ids if object_ids is not None else list(range(1, len(targets) + 1))
        if len(ids) != len(targets) or not targets:
            raise ValueError(f"need one object id per target, got {len(ids)} for {len(targets)}")
        if any(not 0 < i < VOID_LABEL for i in ids):
            raise ValueError(f"object ids must be in 1..{VOID_LABEL - 1}, got {ids}")
        state: TrackState | None = None
        for rgb, index, time, feats in self._encoded(_frames(frames)):
            if state is None:
                objects = [
                    ObjectState(i, t.embedding, t.embedding, None, 0, False, t.mask_weights)
                    for i, t in zip(ids, targets, strict=True)
                ]
                state = TrackState(objects, check_image(rgb).shape[:2], from_targets=True)
            yield self._step_encoded(state, rgb, feats, index=index, time=time)

    def _encoded(
        self, frames: Iterator[tuple[np.ndarray, int, float | None]]
    ) -> Iterator[tuple[np.ndarray, int, float | None, FrameFeatures | None]]:
        """Frames with their features when the encoder batches frames (else None: encoded later).

        Batches never hold frames of different sizes: a size change starts a new batch, and the
        frame of another size fails in :meth:`step`.
        """
        size = self.persam.encoder.batch_size
        if size == 1:
            for rgb, index, time in frames:
                yield rgb, index, time, None
            return
        batch: list[tuple[np.ndarray, int, float | None]] = []
        for item in frames:
            if batch and (len(batch) == size or item[0].shape != batch[0][0].shape):
                yield from self._flush(batch)
                batch = []
            batch.append((check_image(item[0]), item[1], item[2]))
        yield from self._flush(batch)

    def _flush(
        self, batch: list[tuple[np.ndarray, int, float | None]]
    ) -> Iterator[tuple[np.ndarray, int, float | None, FrameFeatures | None]]:
        if not batch:
            return
        feats = self.persam.encoder.encode_many([rgb for rgb, _, _ in batch])
        for (rgb, index, time), f in zip(batch, feats, strict=True):
            yield rgb, index, time, f

    def _step_encoded(
        self,
        state: TrackState,
        rgb: np.ndarray,
        feats: FrameFeatures | None,
        *,
        index: int,
        time: float | None,
    ) -> FrameResult:
        if feats is None:
            return self.step(state, rgb, index=index, time=time)
        if rgb.shape[:2] != state.frame_size:
            raise ValueError(
                f"frame {index} has size {rgb.shape[:2]}, the video {state.frame_size}"
            )
        with torch.inference_mode():
            return self.step_features(state, feats, rgb, index=index, time=time)

    @torch.inference_mode()
    def start(
        self,
        frame: np.ndarray,
        labels: np.ndarray,
        *,
        index: int = 0,
        time: float | None = None,
        feats: FrameFeatures | None = None,
    ) -> tuple[TrackState, FrameResult]:
        """Personalize on the annotated frame; return the state and that frame's result."""
        frame = check_image(frame)
        labels = check_labels(labels, frame.shape[:2])
        ids = label_ids(labels)
        if feats is None:
            feats = self.persam.encode(frame)
        objects = []
        results = []
        for obj_id in ids:
            mask = labels == obj_id
            try:
                embedding = self.persam.embed(feats, mask)
            except ValueError as exc:
                raise ValueError(f"object {obj_id} of the first mask: {exc}") from None
            box = _box_tuple(mask_box(torch.from_numpy(mask)))
            area = int(mask.sum())
            weights = None
            if self.config.finetune.enabled:
                weights = self.persam.finetune(Target(embedding), [(feats, mask)]).weights
            objects.append(
                ObjectState(obj_id, embedding.clone(), embedding, box, area, mask_weights=weights)
            )
            results.append(ObjectResult(obj_id, True, 1.0, area, _int_box(box), float("nan")))
        state = TrackState(objects=objects, frame_size=frame.shape[:2], frames_seen=1)
        output = np.where(labels == VOID_LABEL, 0, labels).astype(np.uint8)
        return state, FrameResult(index, time, output, results, frame)

    @torch.inference_mode()
    def step(
        self, state: TrackState, frame: np.ndarray, *, index: int, time: float | None = None
    ) -> FrameResult:
        """Track every object of ``state`` on the next frame and update the state."""
        frame = self._check_frame(state, frame, index)
        return self.step_features(state, self.persam.encode(frame), frame, index=index, time=time)

    @staticmethod
    def _check_frame(state: TrackState, frame: np.ndarray, index: int) -> np.ndarray:
        frame = check_image(frame)
        if frame.shape[:2] != state.frame_size:
            raise ValueError(
                f"frame {index} has size {frame.shape[:2]}, the video {state.frame_size}"
            )
        return frame

    def step_features(
        self,
        state: TrackState,
        feats: FrameFeatures,
        frame: np.ndarray,
        *,
        index: int,
        time: float | None = None,
    ) -> FrameResult:
        """:meth:`step` on features already computed (for pipelines that batch the encoder)."""
        cfg = self.config.track
        state.frames_seen += 1
        if not state.objects:
            empty = np.zeros(state.frame_size, np.uint8)
            return FrameResult(index, time, empty, [], frame)
        targets = [Target(o.embedding, o.mask_weights) for o in state.objects]
        prompts = [self._prompt(o, state.frame_size) for o in state.objects]
        preds = self.persam.segment_features(feats, targets, prompts)
        found = [not is_absent(p, cfg, search=state.from_targets) for p in preds]
        present_ids = [o.obj_id for o, f in zip(state.objects, found, strict=True) if f]
        logits = [p.mask_logits for p, f in zip(preds, found, strict=True) if f]
        if logits:
            labels = fuse(torch.stack(logits), present_ids, self.sam.mask_threshold)
        else:
            labels = torch.zeros(state.frame_size, dtype=torch.uint8, device=feats.embedding.device)

        results = []
        for obj, pred, ok in zip(state.objects, preds, found, strict=True):
            mask = labels == obj.obj_id
            area = int(mask.sum())
            box = _box_tuple(mask_box(mask)) if ok else None
            obj.present = ok and area > 0
            obj.box = box if obj.present else None
            updated = False
            if obj.present and obj.reference_area == 0:  # first sighting of a saved target
                obj.reference_area = area
            elif obj.present and should_update(pred.score, area, obj.reference_area, cfg):
                updated = self._update_embedding(obj, feats, mask)
                if updated:
                    obj.reference_area = area
            results.append(
                ObjectResult(
                    obj_id=obj.obj_id,
                    present=obj.present,
                    score=pred.score,
                    area=area,
                    bbox=_int_box(obj.box),
                    peak_similarity=pred.peak_similarity,
                    updated=updated,
                    points=pred.points.cpu().numpy(),
                    point_labels=pred.labels.cpu().numpy(),
                )
            )
        return FrameResult(index, time, labels.cpu().numpy(), results, frame)

    def _prompt(self, obj: ObjectState, size: tuple[int, int]) -> ExtraPrompt:
        """The previous frame's box (expanded) and optionally its centre, for a present object."""
        cfg = self.config.track
        if not cfg.box_prompt or obj.box is None:
            return ExtraPrompt()
        box = expand_box(obj.box, cfg.box_margin, size)
        points = (box_center(box),) if cfg.box_center_point else ()
        return ExtraPrompt(box=box, points=points)

    def _update_embedding(self, obj: ObjectState, feats: FrameFeatures, mask: Tensor) -> bool:
        try:
            observed = self.persam.embed(feats, mask.cpu().numpy())
        except ValueError:  # the mask covers no feature cell under the 'paper' rule
            return False
        cfg = self.config.track
        obj.embedding = momentum_update(
            obj.embedding, observed, obj.first_embedding, cfg.momentum, cfg.anchor
        )
        return True


def _frames(frames: Iterable[Any]) -> Iterator[tuple[np.ndarray, int, float | None]]:
    """(rgb, index, time) of arrays or of ``Frame``-like objects (``rgb``, ``index``, ``time``)."""
    for position, item in enumerate(frames):
        yield (
            getattr(item, "rgb", item),
            getattr(item, "index", position),
            getattr(item, "time", None),
        )


def check_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Validate an (H, W) label map of frame size ``size`` with 1..254 objects; return uint8."""
    if not isinstance(labels, np.ndarray) or labels.ndim != 2:
        shape = getattr(labels, "shape", type(labels).__name__)
        raise ValueError(f"the first-frame mask must be an (H, W) label map, got {shape}")
    if tuple(labels.shape) != tuple(size):
        raise ValueError(
            f"the mask has size {labels.shape[1]}x{labels.shape[0]} (WxH) but the frames are "
            f"{size[1]}x{size[0]}; pass --resize-mask to resize it"
        )
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() > 255:
        raise ValueError("the first-frame mask must hold integer object ids 0..254")
    labels = labels.astype(np.uint8)
    ids = label_ids(labels)
    if not ids:
        raise ValueError("the first-frame mask is empty: mark at least one object")
    return labels


def _box_tuple(box: Tensor | None) -> tuple[float, float, float, float] | None:
    return None if box is None else tuple(float(v) for v in box.tolist())  # type: ignore[return-value]


def _int_box(box: tuple[float, ...] | None) -> tuple[int, int, int, int] | None:
    return None if box is None else tuple(int(v) for v in box)  # type: ignore[return-value]
