"""PerSAM's cascaded refinement on a memory tracker (``memory.refine``).

PerSAM refines each frame's mask by decoding again, prompted by the mask's box (its second
refinement step). On a memory tracker the same step goes through the tracker's image path: the
tracked mask's tight box and a positive click at the target's similarity peak among the cells
the mask covers (the mask's most interior pixel when the object has no reference), decoded on
the frame alone by a one-frame session of the same model. The refined mask is what the frame's
outputs show; the tracker's memory keeps the mask the tracker made.

Shapes: features (C, h, w) on the model's square input grid; masks (H, W) bool at frame size;
points and boxes in (x, y) frame pixels.
"""

from __future__ import annotations

import cv2
import numpy as np
from torch import Tensor

from persam_video.memory.redetect import Reference, cell_centre, grid_mask, similarity
from persam_video.persam.geometry import mask_box


def refine_prompt(
    mask: Tensor, features: Tensor, reference: Reference | None
) -> tuple[tuple[float, float], tuple[float, float, float, float]] | None:
    """The click and box that refine a tracked (H, W) bool ``mask``: ((x, y), (x0, y0, x1, y1))
    in frame pixels, or None for an empty mask."""
    box = mask_box(mask)
    if box is None:
        return None
    height, width = mask.shape
    grid = (features.shape[-2], features.shape[-1])
    cells = grid_mask(mask, grid)
    if reference is not None and cells.any():
        sim = similarity(features, reference.embedding).masked_fill(~cells, -2.0)
        click = cell_centre(int(sim.argmax()), grid, (height, width))
        x, y = min(int(click[0]), width - 1), min(int(click[1]), height - 1)
        if bool(mask[y, x]):
            return click, _box(box)
    return interior_point(mask.numpy()), _box(box)


def interior_point(mask: np.ndarray) -> tuple[float, float]:
    """(x, y) of a non-empty (H, W) bool mask's pixel farthest from its border."""
    padded = np.pad(mask.astype(np.uint8), 1)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, 3)[1:-1, 1:-1]
    y, x = np.unravel_index(int(distance.argmax()), distance.shape)
    return float(x), float(y)


def _box(box: Tensor) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return x0, y0, x1, y1
