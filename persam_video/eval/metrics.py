"""Per-frame DAVIS measures: region similarity J (Jaccard) and boundary measure F.

Both are numerically equal to the official DAVIS 2017 evaluation (``db_eval_iou`` and
``f_measure`` of davis2017-evaluation), computed for a whole (T, H, W) stack of frames at once.

Boundary measure, as in the official code:

* the boundary map of a mask marks pixel (y, x) when the mask differs between (y, x) and any of
  its east (y, x+1), south (y+1, x) or south-east (y+1, x+1) neighbours; in the last row only the
  east neighbour is compared, in the last column only the south one, and the bottom-right pixel is
  never a boundary (boundaries sit half a pixel towards the origin, as in Martin's ``seg2bmap``);
* the tolerance radius is ``ceil(bound_th * sqrt(H**2 + W**2))`` pixels (8 for 854x480), or
  ``bound_th`` itself when it is at least 1;
* each boundary map is dilated with the disk ``{(dy, dx): dy**2 + dx**2 <= r**2}`` (scikit-image's
  ``disk(r)``), pixels outside the image contributing nothing;
* precision is the fraction of predicted boundary pixels inside the dilated ground-truth boundary,
  recall the fraction of ground-truth boundary pixels inside the dilated predicted boundary, and
  F = 2PR / (P + R) (0 when P + R = 0). With no predicted boundary, P = 1 and R = 0; with no
  ground-truth boundary, P = 0 and R = 1; with neither, P = R = 1 (so F = 1);
* void pixels are set to background in both masks before the boundaries are extracted (they are
  not excluded from the counts).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = [
    "DEFAULT_BOUND_TH",
    "boundary_map",
    "boundary_measure",
    "boundary_radius",
    "disk_kernel",
    "frame_scores",
    "region_similarity",
]

# Boundary tolerance as a fraction of the image diagonal (official default).
DEFAULT_BOUND_TH = 0.008
# A bound_th at or above this value is a radius in pixels rather than a fraction of the diagonal.
PIXEL_RADIUS_THRESHOLD = 1
# Margin in pixels kept around the objects when cropping: a boundary pixel can sit one pixel above
# or left of the object, and the boundary rule reads one pixel below and right of it.
CROP_MARGIN = 1


def disk_kernel(radius: int) -> np.ndarray:
    """Disk structuring element ``{(dy, dx): dy**2 + dx**2 <= radius**2}``.

    Equal to ``skimage.morphology.disk(radius)`` for a whole radius.

    Returns:
        (2 * radius + 1, 2 * radius + 1) uint8 array of zeros and ones.
    """
    if radius < 0 or int(radius) != radius:
        raise ValueError(f"disk radius must be a non-negative whole number, got {radius}")
    radius = int(radius)
    offsets = np.arange(-radius, radius + 1)
    inside = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2
    return inside.astype(np.uint8)


def boundary_radius(image_size: tuple[int, int], bound_th: float = DEFAULT_BOUND_TH) -> int:
    """Boundary tolerance in pixels for an image of ``image_size`` = (H, W).

    ``bound_th`` below 1 is a fraction of the image diagonal, rounded up; at 1 or above it is the
    radius itself, which must then be a whole number (the official code would build an off-centre
    disk from a fractional one).
    """
    if not bound_th >= 0:
        raise ValueError(f"bound_th must be >= 0, got {bound_th}")
    if bound_th >= PIXEL_RADIUS_THRESHOLD:
        if int(bound_th) != bound_th:
            raise ValueError(f"a pixel radius bound_th >= 1 must be a whole number, got {bound_th}")
        return int(bound_th)
    height, width = image_size
    diagonal = math.sqrt(float(height * height + width * width))
    return math.ceil(bound_th * diagonal)


def boundary_map(masks: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundaries of binary masks (the official ``seg2bmap``).

    Args:
        masks: (..., H, W) array, non-zero = foreground.

    Returns:
        (..., H, W) bool array, True on boundary pixels (see the module docstring for the rule).
    """
    masks = np.asarray(masks)
    if masks.ndim < 2:
        raise ValueError(f"masks must have shape (..., H, W), got {masks.shape}")
    seg = masks.astype(bool, copy=False)
    bmap = np.zeros(seg.shape, dtype=bool)
    here = seg[..., :-1, :-1]
    interior = bmap[..., :-1, :-1]
    np.not_equal(here, seg[..., :-1, 1:], out=interior)
    interior |= here != seg[..., 1:, :-1]
    interior |= here != seg[..., 1:, 1:]
    np.not_equal(seg[..., -1, :-1], seg[..., -1, 1:], out=bmap[..., -1, :-1])
    np.not_equal(seg[..., :-1, -1], seg[..., 1:, -1], out=bmap[..., :-1, -1])
    return bmap


def region_similarity(
    gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None
) -> np.ndarray:
    """Jaccard index |gt ∩ pred| / |gt ∪ pred| of each frame, void pixels left out.

    Args:
        gt: (..., H, W) ground-truth masks, non-zero = object.
        pred: (..., H, W) predicted masks, non-zero = object.
        void: optional (..., H, W) mask of pixels to ignore.

    Returns:
        (...) float64 array; a frame whose union is empty scores 1.
    """
    return frame_scores(gt, pred, void, region=True, boundary=False)[0]


def boundary_measure(
    gt: np.ndarray,
    pred: np.ndarray,
    void: np.ndarray | None = None,
    bound_th: float = DEFAULT_BOUND_TH,
) -> np.ndarray:
    """Boundary F-measure of each frame (the official ``f_measure``).

    Args:
        gt: (..., H, W) ground-truth masks, non-zero = object.
        pred: (..., H, W) predicted masks, non-zero = object.
        void: optional (..., H, W) mask of pixels set to background in both masks.
        bound_th: boundary tolerance, see :func:`boundary_radius`.

    Returns:
        (...) float64 array of F values in [0, 1].
    """
    return frame_scores(gt, pred, void, bound_th, region=False, boundary=True)[1]


def frame_scores(
    gt: np.ndarray,
    pred: np.ndarray,
    void: np.ndarray | None = None,
    bound_th: float = DEFAULT_BOUND_TH,
    *,
    region: bool = True,
    boundary: bool = True,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """:func:`region_similarity` and :func:`boundary_measure` of the same masks, sharing work.

    Returns:
        (J, F), each a (...) float64 array, or None when not asked for.
    """
    gt, pred, void = _check_masks(gt, pred, void)
    batch_shape = gt.shape[:-2]
    radius = boundary_radius(gt.shape[-2:], bound_th) if boundary else 0
    gt, pred, void = (None if m is None else m.reshape(-1, *m.shape[-2:]) for m in (gt, pred, void))
    # Pixels outside both masks take no part in J or F: work on their bounding box (with the
    # void mask applied, the masks only shrink, so the box still holds them).
    window = _object_window(gt | pred)
    if window is None:
        empty = np.ones(batch_shape, dtype=np.float64)
        return (empty if region else None), (empty.copy() if boundary else None)
    rows, cols = window
    gt, pred = gt[:, rows, cols], pred[:, rows, cols]
    valid = None if void is None else ~void[:, rows, cols]
    j = _jaccard(gt, pred, valid).reshape(batch_shape) if region else None
    if boundary and valid is not None:
        gt, pred = gt & valid, pred & valid
    f = _boundary_f(gt, pred, radius).reshape(batch_shape) if boundary else None
    return j, f


def _jaccard(gt: np.ndarray, pred: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """(N,) Jaccard of (N, h, w) bool masks, counting only ``valid`` pixels."""
    overlap = gt & pred
    union = gt | pred
    if valid is not None:
        overlap &= valid
        union &= valid
    n_overlap = _count_per_frame(overlap)
    n_union = _count_per_frame(union)
    scores = np.ones(n_union.shape, dtype=np.float64)
    np.divide(n_overlap, n_union, out=scores, where=n_union > 0)
    return scores


def _boundary_f(gt: np.ndarray, pred: np.ndarray, radius: int) -> np.ndarray:
    """(N,) boundary F of (N, h, w) bool masks cropped to their objects with CROP_MARGIN."""
    gt_bound = boundary_map(gt)
    pred_bound = boundary_map(pred)
    gt_reach = _dilate_frames(gt_bound, radius)
    pred_reach = _dilate_frames(pred_bound, radius)
    return _f_from_counts(
        gt=_count_per_frame(gt_bound),
        pred=_count_per_frame(pred_bound),
        gt_matched=_count_per_frame(gt_bound & pred_reach),
        pred_matched=_count_per_frame(pred_bound & gt_reach),
    )


def _f_from_counts(
    gt: np.ndarray, pred: np.ndarray, gt_matched: np.ndarray, pred_matched: np.ndarray
) -> np.ndarray:
    """F from boundary pixel counts per frame, with the official empty-boundary cases."""
    has_gt = gt > 0
    has_pred = pred > 0
    both = has_gt & has_pred
    precision = np.where(has_pred, 0.0, 1.0)
    recall = np.where(has_gt, 0.0, 1.0)
    np.divide(pred_matched, pred, out=precision, where=both)
    np.divide(gt_matched, gt, out=recall, where=both)
    total = precision + recall
    f = np.zeros(total.shape, dtype=np.float64)
    np.divide(2 * precision * recall, total, out=f, where=total > 0)
    return f


def _count_per_frame(masks: np.ndarray) -> np.ndarray:
    """(N,) int64 count of True pixels in each of (N, H, W) bool masks.

    A loop over frames: numpy's whole-array count is many times faster than its per-axis one.
    """
    return np.array([np.count_nonzero(frame) for frame in masks], dtype=np.int64)


def _object_window(masks: np.ndarray) -> tuple[slice, slice] | None:
    """Rows and columns holding any foreground of (N, H, W) masks, plus CROP_MARGIN, or None."""
    footprint = masks.any(axis=0)
    rows = np.flatnonzero(footprint.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(footprint.any(axis=0))
    height, width = footprint.shape
    top, bottom = max(rows[0] - CROP_MARGIN, 0), min(rows[-1] + CROP_MARGIN, height - 1)
    left, right = max(cols[0] - CROP_MARGIN, 0), min(cols[-1] + CROP_MARGIN, width - 1)
    return slice(top, bottom + 1), slice(left, right + 1)


def _dilate_frames(frames: np.ndarray, radius: int) -> np.ndarray:
    """Dilate each of (N, H, W) bool frames with :func:`disk_kernel` in one OpenCV call.

    The frames are stacked into one tall image with ``radius`` empty rows after each, so that no
    frame reaches into the next.
    """
    if radius == 0:
        return frames.copy()
    n_frames, height, width = frames.shape
    canvas = np.zeros((n_frames, height + radius, width), dtype=np.uint8)
    canvas[:, :height] = frames
    tall = canvas.reshape(n_frames * (height + radius), width)
    dilated = cv2.dilate(tall, disk_kernel(radius))
    # OpenCV writes 0 or 1: reinterpret the bytes as bool without a copy.
    return dilated.reshape(n_frames, height + radius, width)[:, :height].view(bool)


def _check_masks(
    gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate matching (..., H, W) shapes and convert to bool (non-zero = True)."""
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.ndim < 2:
        raise ValueError(f"masks must have shape (..., H, W), got {gt.shape}")
    if gt.shape != pred.shape:
        raise ValueError(f"gt shape {gt.shape} does not match prediction shape {pred.shape}")
    if min(gt.shape[-2:]) == 0:
        raise ValueError(f"masks must not be empty images, got shape {gt.shape}")
    if void is not None:
        void = np.asarray(void)
        if void.shape != gt.shape:
            raise ValueError(f"void shape {void.shape} does not match mask shape {gt.shape}")
        void = void.astype(bool, copy=False)
    return gt.astype(bool, copy=False), pred.astype(bool, copy=False), void
