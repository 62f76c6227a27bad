"""Geometry of masks and prompts: boxes, areas, overlaps, coordinates and resolutions (pure
functions).

Coordinates are (x, y) pixels of the original frame; sizes are (H, W).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from torch import Tensor

from persam_video.persam.features import FrameFeatures


def upsample_logits(sam: Sam, feats: FrameFeatures, low_res: Tensor) -> Tensor:
    """(B, M, 4h, 4w) low-resolution logits to (B, M, H, W) at frame resolution."""
    return sam.postprocess_masks(low_res, feats.input_size, feats.original_size)


def mask_box(mask: Tensor) -> Tensor | None:
    """Tight (x0, y0, x1, y1) box of an (H, W) bool mask as float64, or None when empty."""
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    if rows.numel() == 0:
        return None
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    return torch.stack([cols[0], rows[0], cols[-1], rows[-1]]).to(torch.float64)


def low_res_box(sam: Sam, feats: FrameFeatures, low_res: Tensor) -> Tensor | None:
    """Box (x0, y0, x1, y1) in frame pixels of a (1, 4h, 4w) low-resolution mask, or None.

    The frame-size mask is never made: the logits' row and column maxima (over the cells that
    the frame covers) go through the same two bilinear resizes as :func:`upsample_logits`, in
    one dimension. Since bilinear weights are convex, the result contains the box of the
    upsampled mask, and equals it unless the mask's extremes fall between cells of different
    rows (a fraction of a low-resolution cell).
    """
    logits = low_res[0]
    low_h, low_w = logits.shape
    # Cells that the frame's pixels interpolate from (one past the content, for the edge).
    rows, cols = feats.content_cells((low_h, low_w))
    rows, cols = min(low_h, rows + 1), min(low_w, cols + 1)
    extents = []  # per axis, the maximum over the other axis's cells, then the two resizes
    for axis, profile in ((1, logits[:rows].amax(dim=0)), (0, logits[:, :cols].amax(dim=1))):
        line = F.interpolate(profile[None, None], size=feats.image_size, mode="linear")
        line = line[..., : feats.input_size[axis]]
        line = F.interpolate(line, size=feats.original_size[axis], mode="linear")[0, 0]
        inside = torch.nonzero(line > sam.mask_threshold).flatten()
        if inside.numel() == 0:
            return None
        extents.append((inside[0], inside[-1]))
    (x0, x1), (y0, y1) = extents
    return torch.stack([x0, y0, x1, y1]).to(torch.float64)


def low_res_area(feats: FrameFeatures, low_res: Tensor, threshold: float) -> Tensor:
    """(..., 4h, 4w) low-resolution logits -> (...) count of positive cells with frame content."""
    rows, cols = feats.content_cells(tuple(low_res.shape[-2:]))
    return (low_res[..., :rows, :cols] > threshold).flatten(-2).sum(-1)


def mask_iou(masks: Tensor, reference: Tensor) -> Tensor:
    """(M, h, w) bool masks against an (h, w) bool reference: (M,) IoU (0 when both empty)."""
    inter = (masks & reference).flatten(1).sum(1)
    union = (masks | reference).flatten(1).sum(1)
    return torch.where(
        union > 0, inter / union.clamp_min(1), torch.zeros_like(inter, dtype=torch.float32)
    )


def to_input_coords(xy: Tensor, feats: FrameFeatures) -> Tensor:
    """(..., 2) float64 frame (x, y) to SAM's resized-input frame, as float32.

    Computed in float64 and rounded once, exactly like ``SamPredictor`` (numpy, then float32).
    """
    (old_h, old_w), (new_h, new_w) = feats.original_size, feats.input_size
    scale = torch.tensor([new_w / old_w, new_h / old_h], dtype=torch.float64, device=xy.device)
    return (xy.to(torch.float64) * scale).to(torch.float32).to(feats.embedding.device)


#: Magnitude of the low-resolution logits made from a binary mask (:func:`mask_to_low_res`):
#: about what SAM's own confident logits reach, so a mask prompt made from an annotation looks
#: like one SAM made.
BINARY_MASK_LOGIT = 10.0


def mask_to_low_res(feats: FrameFeatures, mask: Tensor, low_size: tuple[int, int]) -> Tensor:
    """An (H, W) bool frame mask as (1, h, w) low-resolution logits over SAM's padded input
    (``low_size`` = (h, w), e.g. (4 * grid_h, 4 * grid_w)): +-:data:`BINARY_MASK_LOGIT` where
    the mask covers more / less than half a cell."""
    soft = mask.to(torch.float32).reshape(1, 1, *mask.shape[-2:])
    soft = F.interpolate(soft, size=feats.input_size, mode="bilinear", antialias=True)
    padded = F.pad(
        soft, (0, feats.image_size - soft.shape[-1], 0, feats.image_size - soft.shape[-2])
    )
    coverage = F.adaptive_avg_pool2d(padded, low_size)[0]
    return (2 * coverage - 1) * BINARY_MASK_LOGIT
