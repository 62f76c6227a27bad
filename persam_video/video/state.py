"""Per-video state and per-frame results of the tracker (explicit, so one tracker can follow
several videos)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

from persam_video.video.rules import Hysteresis

if TYPE_CHECKING:
    from persam_video.persam.api import Target


@dataclass
class ObjectState:
    """What the tracker remembers about one object between frames."""

    obj_id: int
    #: (C,) embedding from the first frame (the user's annotation).
    first_embedding: Tensor
    #: (C,) current target embedding (momentum-updated).
    embedding: Tensor
    #: Tight (x0, y0, x1, y1) box of the object's mask in the previous frame; None when absent.
    box: tuple[float, float, float, float] | None = None
    #: Mask area (pixels) when the embedding was last updated (or in the first frame); None
    #: while the object has not been seen yet (a saved target before its first sighting).
    reference_area: int | None = None
    present: bool = True
    #: (3,) PerSAM-F mask weights learned on the first frame, or None.
    mask_weights: Tensor | None = None
    #: How many user annotations ``first_embedding`` averages (a correction on a later frame
    #: joins the anchor: its embedding enters the object's memory).
    annotations: int = 1
    #: Absence state (lost or tracked, and the current run of bad or good frames).
    #: None at construction: tracked when ``present``, else lost (a saved target not yet seen).
    hysteresis: Hysteresis | None = None
    #: (1, 4h, 4w) the object's own low-resolution logits on the previous frame (None when it
    #: was lost there, or its mask came from an annotation and has not been predicted since
    #: unless the temporal prior needs it).
    previous_logits: Tensor | None = None
    #: The track is unbroken since the object's annotation: found on every frame, its mask
    #: never jumping away from where it was expected (what lets the jump guard act).
    steady: bool = True
    #: On the previous frame it looked as if leaving the view: at the frame's border with less
    #: than its reference area.
    leaving: bool = False
    #: Lost while leaving the view: with ``track.reenter_at_border`` it is re-acquired only by
    #: a mask that reaches the frame's border.
    exited: bool = False

    def __post_init__(self) -> None:
        if self.hysteresis is None:
            self.hysteresis = Hysteresis(lost=not self.present, acquired=self.present)

    @classmethod
    def from_target(cls, obj_id: int, target: Target) -> ObjectState:
        """The state of a saved ``target`` searched for as object ``obj_id``: absent (lost)
        until its first sighting, no box and no reference area yet."""
        return cls(
            obj_id=obj_id,
            first_embedding=target.embedding,
            embedding=target.embedding,
            present=False,
            mask_weights=target.mask_weights,
            steady=False,
        )


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
    #: Whether the object's mask on this frame is the user's annotation (seed or correction).
    annotated: bool = False
    #: (N, 2) float (x, y) point prompts and (N,) labels used on this frame (empty on frame 0).
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    point_labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    #: (H, W) float32 location confidence of the frame (cosine similarity of the target to
    #: the features, upsampled), or None where the object was not searched for (annotated).
    similarity: np.ndarray | None = None
    #: Whether the mask was carried along the optical flow (a frame that was not a keyframe:
    #: ``score`` and ``peak_similarity`` are NaN, nothing was searched).
    propagated: bool = False
    #: On the annotated frame with PerSAM-F: the learned weights and how the training went
    #: (``weights``, ``steps``, ``seconds``, ``steps_per_second``, losses); else None.
    finetune: dict[str, Any] | None = None
    #: The object became lost on this frame (``track.lost_after`` bad frames in a row).
    lost: bool = False
    #: The object was re-acquired on this frame (``track.reacquire_after`` good frames in a row).
    reacquired: bool = False


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
    #: Whether SAM ran on this frame (False: the masks were carried along the optical flow from
    #: the frame before; see ``keyframes`` in the config).
    keyframe: bool = True
    #: Why ``keyframes.mode: auto`` made this frame a keyframe (``flow``, ``area``, ``border``,
    #: ``gap``; see :data:`persam_video.video.keyframes.REKEY_REASONS`), else None.
    rekey: str | None = None

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
    #: (1, C, h, w) SAM features of the previous frame, kept only for the affinity temporal
    #: prior (``track.temporal_prior: affinity``).
    previous_features: Tensor | None = None
    #: (H, W) uint8 gray previous frame, kept only for the flow temporal prior
    #: (``track.temporal_prior: flow``).
    previous_gray: np.ndarray | None = None

    @property
    def object_ids(self) -> list[int]:
        return [o.obj_id for o in self.objects]
