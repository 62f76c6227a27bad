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
disocclusions, a scene cut, flow that failed) are counted per object and, with ``drop``,
dropped to the background; pixels whose source lies outside the previous frame always are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from persam_video.persam.features import FrameFeatures

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
    #: the threshold (dropped to the background when :func:`propagate` was asked to drop them,
    #: kept otherwise).
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
    drop: bool = True,
) -> Propagation:
    """Carry ``labels`` of the previous frame to the next one along the optical flow.

    Args:
        prev_gray: (H, W) uint8 gray previous frame (see :func:`to_gray`).
        gray: (H, W) uint8 gray new frame.
        labels: (H, W) uint8 label map of the previous frame.
        fb_threshold: forward-backward error (pixels) above which a pixel fails the check.
        preset: DIS preset (``ultrafast``, ``fast``, ``medium``).
        drop: whether pixels above ``fb_threshold`` become background (they are counted in
            :attr:`Propagation.dropped` either way).

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
    fwd_at_src = cv2.remap(forward, src_x, src_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    fb_error = np.hypot(
        backward[..., 0] + fwd_at_src[..., 0], backward[..., 1] + fwd_at_src[..., 1]
    )
    col, row = np.rint(src_x).astype(np.intp), np.rint(src_y).astype(np.intp)
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    fb_error[~inside] = np.inf
    warped = labels[np.clip(row, 0, height - 1), np.clip(col, 0, width - 1)]
    warped[~inside] = 0
    bad = fb_error > fb_threshold
    dropped = np.bincount(warped[bad & inside], minlength=LABEL_BINS)
    if drop:
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


def warp_low_res(logits: Tensor, backward: np.ndarray, feats: FrameFeatures) -> Tensor:
    """Carry low-resolution mask logits of the previous frame to the new one along the flow.

    Args:
        logits: (1, h, w) logits over SAM's padded square input of the previous frame (the
            decoder's low-resolution output).
        backward: (H, W, 2) float32 flow from the new frame to the previous one
            (:func:`dense_flow` of (new, previous)), at frame resolution.
        feats: the new frame's features, for the geometry (``input_size``, ``image_size``).

    Returns:
        (1, h, w) logits of the new frame: each cell over the frame takes the previous logits
        (bilinear) where the backward flow at its centre points; sources outside the frame
        take the nearest edge value. Cells over the padding keep their previous values.
    """
    input_size, image_size = feats.input_size, feats.image_size
    low_h, low_w = logits.shape[-2:]
    height, width = backward.shape[:2]
    # Centres of the low-resolution cells in SAM's input, then in frame pixels.
    cell_y, cell_x = image_size / low_h, image_size / low_w
    to_frame_y, to_frame_x = height / input_size[0], width / input_size[1]
    cy = ((np.arange(low_h, dtype=np.float32) + 0.5) * cell_y * to_frame_y - 0.5)[:, None]
    cx = ((np.arange(low_w, dtype=np.float32) + 0.5) * cell_x * to_frame_x - 0.5)[None, :]
    map_x = np.ascontiguousarray(np.broadcast_to(cx, (low_h, low_w)), dtype=np.float32)
    map_y = np.ascontiguousarray(np.broadcast_to(cy, (low_h, low_w)), dtype=np.float32)
    flow = cv2.remap(backward, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # Source positions in frame pixels, back to fractional low-resolution cells.
    src_x = ((map_x + flow[..., 0] + 0.5) / to_frame_x / cell_x - 0.5).clip(
        -0.5, input_size[1] / cell_x - 0.5
    )
    src_y = ((map_y + flow[..., 1] + 0.5) / to_frame_y / cell_y - 0.5).clip(
        -0.5, input_size[0] / cell_y - 0.5
    )
    # grid_sample's normalized coordinates (align_corners=False: -1 and 1 are the outer edges).
    grid = np.stack([(src_x + 0.5) / low_w * 2 - 1, (src_y + 0.5) / low_h * 2 - 1], axis=-1)
    grid_t = torch.from_numpy(grid).to(device=logits.device, dtype=torch.float32)[None]
    warped = F.grid_sample(
        logits[None].to(torch.float32),
        grid_t,
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    )[0].to(logits.dtype)
    rows, cols = feats.content_cells((low_h, low_w))
    out = logits.clone()
    out[:, :rows, :cols] = warped[:, :rows, :cols]
    return out


__all__ = [
    "DIS_PRESETS",
    "Propagation",
    "dense_flow",
    "propagate",
    "to_gray",
    "warp_low_res",
]
