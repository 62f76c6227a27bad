"""Clicks and boxes to masks with SAM itself: the model's prompt encoder and mask decoder.

A user who cannot draw a mask points at the object (positive clicks, optionally negative ones)
or drags a box around it. :func:`prompt_mask` turns such a prompt into a mask on a frame's
already computed features, the way ``SamPredictor.predict`` does (no PerSAM guidance: the
prompt is the user's, not a location prior):

* one click is ambiguous (a part, the object, a group), so SAM's three multimask outputs are
  computed and the one with the best predicted IoU is kept;
* several clicks, or a box (with or without clicks), are not: SAM's single-mask output is kept.

Coordinates are (x, y) pixels of the frame, origin at the top left corner of the top left pixel:
a point must lie inside ``[0, W) x [0, H)``, a box ``(x0, y0, x1, y1)`` inside ``[0, W] x [0, H]``
with ``x1 > x0`` and ``y1 > y0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from segment_anything.modeling import Sam

from persam_video.persam.cascade import MULTIMASK, SINGLE, decode
from persam_video.persam.features import FrameFeatures
from persam_video.persam.geometry import upsample_logits

#: Label of a positive click (on the object) and of a negative click (not the object), as SAM.
POSITIVE_CLICK = 1
NEGATIVE_CLICK = 0
CLICK_LABELS = (NEGATIVE_CLICK, POSITIVE_CLICK)


class PromptError(ValueError):
    """A click or box prompt is invalid (outside the frame, empty box, no positive prompt)."""


@dataclass(frozen=True)
class PromptMask:
    """What SAM made of a click or box prompt on one frame."""

    #: (H, W) bool mask.
    mask: np.ndarray
    #: SAM's predicted IoU of the kept output.
    score: float
    #: Which output was kept: ``multimask`` (one click, best of three) or ``single``.
    output: str


def check_points(
    points: Sequence[Sequence[float]] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    size: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Validate clicks on a frame of size ``size`` (H, W).

    Returns (N, 2) float64 (x, y) points and (N,) int64 labels (1 positive, 0 negative).
    """
    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    lab = np.asarray(labels, dtype=np.int64).reshape(-1)
    if xy.shape[0] != lab.shape[0]:
        raise PromptError(f"got {xy.shape[0]} points but {lab.shape[0]} labels")
    if not set(lab.tolist()) <= set(CLICK_LABELS):
        raise PromptError(f"point labels must be 1 (positive) or 0 (negative), got {lab.tolist()}")
    height, width = size
    for x, y in xy:
        if not (np.isfinite(x) and np.isfinite(y) and 0 <= x < width and 0 <= y < height):
            raise PromptError(
                f"point ({x:g}, {y:g}) is outside the {width}x{height} frame "
                f"(x in 0..{width - 1}, y in 0..{height - 1})"
            )
    return xy, lab


def check_box(box: Sequence[float] | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Validate an (x0, y0, x1, y1) box on a frame of size ``size`` (H, W); (4,) float64."""
    values = np.asarray(box, dtype=np.float64).reshape(-1)
    if values.shape != (4,) or not np.isfinite(values).all():
        raise PromptError(f"a box is four numbers x0, y0, x1, y1, got {list(values)}")
    x0, y0, x1, y1 = values
    if x1 <= x0 or y1 <= y0:
        raise PromptError(f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) needs x1 > x0 and y1 > y0")
    height, width = size
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        raise PromptError(
            f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is outside the {width}x{height} frame"
        )
    return values


@torch.inference_mode()
def prompt_mask(
    sam: Sam,
    feats: FrameFeatures,
    points: Sequence[Sequence[float]] | np.ndarray | None = None,
    labels: Sequence[int] | np.ndarray | None = None,
    box: Sequence[float] | np.ndarray | None = None,
) -> PromptMask:
    """SAM's mask for clicks and/or a box on encoded features of one frame.

    Args:
        sam: the model (its prompt encoder and mask decoder run unchanged).
        feats: the frame's features (:class:`FrameFeatures`, frame size (H, W)).
        points: (N, 2) (x, y) clicks in frame pixels, or None.
        labels: (N,) 1 for positive clicks, 0 for negative ones (default: all positive).
        box: (x0, y0, x1, y1) in frame pixels, or None.

    Returns:
        A :class:`PromptMask` with the (H, W) bool mask (possibly empty: the caller decides).

    Raises:
        PromptError: no positive click and no box, or a prompt outside the frame.
    """
    size = feats.original_size
    if points is None:
        points = np.zeros((0, 2))
    if labels is None:
        labels = np.full(len(points), POSITIVE_CLICK)
    xy, lab = check_points(points, labels, size)
    box_xy = None if box is None else check_box(box, size)
    if box_xy is None and not (lab == POSITIVE_CLICK).any():
        raise PromptError("a prompt needs a positive click or a box")
    device = feats.embedding.device
    point_t = torch.as_tensor(xy, dtype=torch.float64, device=device)[None]
    label_t = torch.as_tensor(lab, dtype=torch.int64, device=device)[None]
    boxes = None if box_xy is None else torch.as_tensor(box_xy, device=device)[None]
    low, iou = decode(sam, feats, point_t, label_t, boxes=boxes)  # (1, 4, 4h, 4w), (1, 4)
    if box_xy is None and xy.shape[0] == 1:
        output = "multimask"
        best = int(iou[0, MULTIMASK].argmax())
        kept, score = low[:, MULTIMASK][:, best : best + 1], iou[0, MULTIMASK][best]
    else:
        output = "single"
        kept, score = low[:, SINGLE], iou[0, 0]
    full = upsample_logits(sam, feats, kept)[0, 0]  # (H, W)
    mask = (full > sam.mask_threshold).cpu().numpy()
    return PromptMask(mask=mask, score=float(score), output=output)
