"""Dense optical flow (OpenCV DIS) and label-map propagation with a forward-backward check.

Pure functions on numpy arrays, no tracker state: the keyframe loop of
:class:`~persam_video.video.tracker.VideoTracker` uses them to carry masks from one frame to the
next without SAM, and they are meant to be reusable elsewhere (e.g. a temporal prior).

Conventions: ``flow[y, x] = (dx, dy)`` in pixels, (H, W, 2) float32; a flow from frame ``a`` to
frame ``b`` says where each pixel of ``a`` went in ``b`` (``a[y, x] ~ b[y + dy, x + dx]``).

:func:`propagate` warps a label map *backward*: for every pixel ``p`` of the new frame, the
backward flow (new -> previous) says where it came from, and it takes the label found there
(nearest pixel, so ids are never blended). The forward flow (previous -> new), sampled where
``p`` came from, should bring it back to ``p``; the distance it misses by is the
forward-backward error. Pixels whose error exceeds ``fb_threshold`` (occlusions,
disocclusions, a scene cut, flow that failed) are dropped to the background and counted per
object, and so are pixels whose source lies outside the previous frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

FlowPreset = Literal["ultrafast", "fast", "medium"]
#: OpenCV's DIS presets by name (speed against accuracy).
DIS_PRESETS: dict[str, int] = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
#: Default forward-backward error (pixels) above which a propagated pixel is dropped.
DEFAULT_FB_THRESHOLD = 1.0
DEFAULT_PRESET: FlowPreset = "fast"
#: Label maps are uint8: 0 background, 1..254 objects (255 never appears in a tracker's labels).
LABEL_BINS = 256


@dataclass(frozen=True)
class Propagation:
    """The result of :func:`propagate`: the new label map and how reliable it is.

    Per-object counts are arrays of :data:`LABEL_BINS` entries indexed by object id (entry 0 is
    the background and means nothing); use :meth:`share` for ratios.
    """

    #: (H, W) uint8 label map of the new frame (dropped pixels are background).
    labels: np.ndarray
    #: (H, W) float32 forward-backward error in pixels (inf where the source is outside).
    fb_error: np.ndarray
    #: (LABEL_BINS,) pixels per id in the previous label map.
    previous: np.ndarray
    #: (LABEL_BINS,) pixels per id in the new label map (after dropping).
    areas: np.ndarray
    #: (LABEL_BINS,) pixels whose source had this id but whose forward-backward error exceeded
    #: the threshold (dropped).
    dropped: np.ndarray
    #: (LABEL_BINS,) pixels of the previous mask that the forward flow moves out of the frame.
    leaving: np.ndarray
    #: Share of the new frame's pixels whose error exceeds the threshold or whose source lies
    #: outside the previous frame (near 1 on a scene cut).
    frame_inconsistent: float

    def share(self, counts: np.ndarray, obj_id: int) -> float:
        """``counts[obj_id]`` over the object's pixels in the previous frame (0 when it had
        none), e.g. ``share(p.dropped, 3)``."""
        total = int(self.previous[obj_id])
        return float(counts[obj_id]) / total if total else 0.0

    def object_ids(self) -> list[int]:
        """Ids with pixels in the previous label map."""
        return [int(i) for i in np.flatnonzero(self.previous) if i != 0]


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) uint8 luma, the input of :func:`dense_flow`."""
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def dense_flow(
    first: np.ndarray, second: np.ndarray, preset: FlowPreset = DEFAULT_PRESET
) -> np.ndarray:
    """(H, W, 2) float32 DIS flow from ``first`` to ``second``, both (H, W) uint8 gray."""
    if first.shape != second.shape or first.ndim != 2:
        raise ValueError(f"flow needs two (H, W) gray frames, got {first.shape} and {second.shape}")
    dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])
    return dis.calc(np.ascontiguousarray(first), np.ascontiguousarray(second), None)


def propagate(
    prev_gray: np.ndarray,
    gray: np.ndarray,
    labels: np.ndarray,
    *,
    fb_threshold: float = DEFAULT_FB_THRESHOLD,
    preset: FlowPreset = DEFAULT_PRESET,
) -> Propagation:
    """Carry ``labels`` of the previous frame to the next one along the optical flow.

    Args:
        prev_gray: (H, W) uint8 gray previous frame (see :func:`to_gray`).
        gray: (H, W) uint8 gray new frame.
        labels: (H, W) uint8 label map of the previous frame.
        fb_threshold: forward-backward error (pixels) above which a pixel is dropped.
        preset: DIS preset (``ultrafast``, ``fast``, ``medium``).

    Returns:
        A :class:`Propagation`: the new (H, W) uint8 labels (ids never overlap: each pixel takes
        one source pixel's id) and the per-object reliability counts.
    """
    if labels.shape != gray.shape:
        raise ValueError(f"labels {labels.shape} and frames {gray.shape} differ in size")
    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    height, width = gray.shape
    forward = dense_flow(prev_gray, gray, preset)
    backward = dense_flow(gray, prev_gray, preset)
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    src_x, src_y = xs + backward[..., 0], ys + backward[..., 1]
    # Where the forward flow takes the source point: back at p when both flows agree.
    fwd_at_src = cv2.remap(forward, src_x, src_y, cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
    fb_error = np.hypot(backward[..., 0] + fwd_at_src[..., 0],
                        backward[..., 1] + fwd_at_src[..., 1])  # fmt: skip
    col, row = np.rint(src_x).astype(np.intp), np.rint(src_y).astype(np.intp)
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    fb_error[~inside] = np.inf
    warped = labels[np.clip(row, 0, height - 1), np.clip(col, 0, width - 1)]
    warped[~inside] = 0
    bad = fb_error > fb_threshold
    dropped = np.bincount(warped[bad & inside], minlength=LABEL_BINS)
    warped[bad] = 0
    dest_x, dest_y = xs + forward[..., 0], ys + forward[..., 1]
    leaves = (dest_x < -0.5) | (dest_x > width - 0.5) | (dest_y < -0.5) | (dest_y > height - 0.5)
    return Propagation(
        labels=warped,
        fb_error=fb_error,
        previous=np.bincount(labels.ravel(), minlength=LABEL_BINS),
        areas=np.bincount(warped.ravel(), minlength=LABEL_BINS),
        dropped=dropped,
        leaving=np.bincount(labels[leaves], minlength=LABEL_BINS),
        frame_inconsistent=float(bad.mean()),
    )


__all__ = ["DIS_PRESETS", "Propagation", "dense_flow", "propagate", "to_gray"]
