"""PerSAM's location prior: the target embedding, its similarity to a frame, point prompts and
the target-guided attention map (pure functions, batched over K targets of one frame).

1. :func:`reference_cells` + :func:`pool_embedding`: a target embedding (C,) from a mask.
2. :func:`similarity_grid`, :func:`similarity_map`: location confidence (cosine similarity).
3. :func:`select_points`: positive and negative point prompts (x, y order).
4. :func:`attention_bias`: the target-guided attention map.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide
from torch import Tensor

from persam_video.config import PriorConfig
from persam_video.persam.components import grow_region
from persam_video.persam.features import LOW_RES_SCALE, FrameFeatures, pad_to_square

#: Point label of a positive / negative click in SAM's prompt encoder.
POSITIVE, NEGATIVE = 1, 0


def reference_cells(sam: Sam, feats: FrameFeatures, mask: np.ndarray, prior: PriorConfig) -> Tensor:
    """Which feature cells belong to the object in an (H, W) bool ``mask``; (h, w) bool.

    ``paper``: the official rule. The mask is rendered as a uint8 image of intensity
    ``prior.ref_mask_value``, resized like the image, normalized with SAM's red-channel statistics,
    zero-padded, bilinearly resized to the grid; cells with a positive value are kept.

    ``area``: cells whose area is covered by at least ``prior.ref_area_threshold`` of the mask;
    when no cell reaches it, the best-covered cells (so tiny objects still get cells).
    """
    device = feats.embedding.device
    grid = feats.grid_size
    if prior.ref_cells == "paper":
        rendered = (mask.astype(np.uint8) * np.uint8(round(prior.ref_mask_value)))[..., None]
        resized = ResizeLongestSide(feats.image_size).apply_image(rendered)
        values = torch.as_tensor(resized, device=device, dtype=torch.float32).reshape(
            1, 1, *resized.shape[:2]
        )
        values = (values - sam.pixel_mean[0]) / sam.pixel_std[0]
        values = pad_to_square(values, feats.image_size)
        sampled = F.interpolate(values, size=grid, mode="bilinear", align_corners=False)
        return sampled[0, 0] > 0
    soft = torch.as_tensor(mask, device=device, dtype=torch.float32)[None, None]
    soft = F.interpolate(soft, size=feats.input_size, mode="bilinear", antialias=True)
    coverage = F.adaptive_avg_pool2d(pad_to_square(soft, feats.image_size), grid)[0, 0]
    cells = coverage >= prior.ref_area_threshold
    if not cells.any() and coverage.max() > 0:
        cells = coverage == coverage.max()
    return cells


def pool_embedding(feats: FrameFeatures, cells: Tensor, pool: str) -> Tensor:
    """The target embedding (C,): ``mean`` or ``mean_max`` (= (mean + max) / 2) of cell features.

    Raises ``ValueError`` when ``cells`` is empty.
    """
    if not bool(cells.any()):
        raise ValueError(
            "the object mask covers no feature cell (it is empty or too small for the 'paper' "
            "rule; use prior.ref_cells=area)"
        )
    selected = feats.embedding[0].permute(1, 2, 0)[cells]  # (n, C)
    mean = selected.mean(0)
    if pool == "mean":
        return mean
    return (mean + selected.max(0).values) / 2


def similarity_grid(feats: FrameFeatures, embeddings: Tensor) -> Tensor:
    """Cosine similarity of each target embedding (K, C) to each feature cell: (K, h, w)."""
    features = F.normalize(feats.embedding[0], dim=0)  # (C, h, w)
    return torch.einsum("kc,chw->khw", F.normalize(embeddings, dim=-1), features)


def similarity_map(sam: Sam, feats: FrameFeatures, sim_grid: Tensor) -> Tensor:
    """Upsample (K, h, w) cell similarities to the frame: (K, H, W), as the official code does.

    Bilinear x4 (to the decoder's low resolution), then SAM's own ``postprocess_masks``.
    """
    low = F.interpolate(sim_grid[None], scale_factor=LOW_RES_SCALE, mode="bilinear")
    return sam.postprocess_masks(low, feats.input_size, feats.original_size)[0]


def peak_similarity(feats: FrameFeatures, sim_grid: Tensor) -> Tensor:
    """(K,) highest cell similarity among cells holding image content."""
    rows, cols = feats.content_grid
    return sim_grid[:, :rows, :cols].flatten(1).max(dim=1).values


def select_points(
    sim_map: Tensor, num_positive: int, num_negative: int, windows: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Point prompts from (K, H, W) similarity maps.

    ``windows``: optional (K, H, W) bool search windows; a target's positives are then its
    most similar pixels inside its window (anywhere when the window holds fewer pixels than
    ``num_positive``). Negatives are always taken anywhere.

    Returns:
        points: (K, num_positive + num_negative, 2) float64 (x, y) pixel coordinates: the
        ``num_positive`` most similar pixels first (most similar first), then the
        ``num_negative`` least similar.
        labels: (K, N) int64, 1 for positive and 0 for negative points.
    """
    width = sim_map.shape[-1]
    flat = sim_map.flatten(1)
    searched = flat
    if windows is not None:
        inside = windows.flatten(1)
        usable = inside.sum(dim=1, keepdim=True) >= num_positive
        searched = torch.where(inside | ~usable, flat, torch.finfo(flat.dtype).min)
    index = searched.topk(num_positive, dim=1).indices
    if num_negative:
        lowest = flat.topk(num_negative, dim=1, largest=False).indices
        index = torch.cat([index, lowest], dim=1)
    points = torch.stack([index % width, index // width], dim=-1).to(torch.float64)
    labels = torch.full(index.shape, POSITIVE, dtype=torch.int64, device=sim_map.device)
    labels[:, num_positive:] = NEGATIVE
    return points, labels


def search_windows(
    size: tuple[int, int],
    boxes: list[tuple[float, float, float, float] | None],
    grow: float,
    device: torch.device | str | None = None,
) -> Tensor | None:
    """(K, H, W) bool search windows of K targets on an (H, W) frame: each ``(x0, y0, x1, y1)``
    box in frame pixels grown by ``grow`` times its width (height) on the left and right (top
    and bottom); the whole frame for a target without a box. None when no target has a box or
    ``grow`` is 0 (the search is global)."""
    if grow <= 0 or all(box is None for box in boxes):
        return None
    height, width = size
    windows = torch.ones((len(boxes), height, width), dtype=torch.bool, device=device)
    for i, box in enumerate(boxes):
        if box is None:
            continue
        x0, y0, x1, y1 = box
        pad_x, pad_y = grow * max(x1 - x0, 1.0), grow * max(y1 - y0, 1.0)
        left, right = max(0, int(x0 - pad_x)), min(width, int(np.ceil(x1 + pad_x)) + 1)
        top, bottom = max(0, int(y0 - pad_y)), min(height, int(np.ceil(y1 + pad_y)) + 1)
        windows[i] = False
        windows[i, top:bottom, left:right] = True
    return windows


def attention_bias(feats: FrameFeatures, sim_grid: Tensor, sim_map: Tensor, mode: str) -> Tensor:
    """The target-guided attention map A = sigmoid(standardized similarity): (K, h * w).

    ``paper``: standardize the (K, H, W) frame-size map (mean, unbiased std) and resize it to the
    grid bilinearly, as persam.py (which stretches the unpadded frame over the padded grid).
    ``grid``: standardize the (K, h, w) cell similarities over the cells with image content;
    padding cells get the lowest value.
    """
    k = sim_grid.shape[0]
    if mode == "paper":
        flat = sim_map.flatten(1)
        standard = (sim_map - flat.mean(1)[:, None, None]) / flat.std(1)[:, None, None]
        standard = F.interpolate(standard[None], size=feats.grid_size, mode="bilinear")[0]
    else:
        rows, cols = feats.content_grid
        content = sim_grid[:, :rows, :cols].flatten(1)
        mean, std = content.mean(1), content.std(1).clamp_min(torch.finfo(content.dtype).eps)
        standard = (sim_grid - mean[:, None, None]) / std[:, None, None]
        floor = ((content.min(1).values - mean) / std)[:, None, None]
        valid = torch.zeros_like(standard, dtype=torch.bool)
        valid[:, :rows, :cols] = True
        standard = torch.where(valid, standard, floor)
    return standard.sigmoid().reshape(k, -1)


def cell_centres(feats: FrameFeatures, cells: Tensor) -> Tensor:
    """(n, 2) (row, col) feature cells to (n, 2) float64 (x, y) frame pixels of their centres,
    clipped to the frame."""
    stride = feats.image_size / feats.grid_size[0]
    (height, width), (in_h, in_w) = feats.original_size, feats.input_size
    rows = (cells[:, 0].to(torch.float64) + 0.5) * stride * height / in_h
    cols = (cells[:, 1].to(torch.float64) + 0.5) * stride * width / in_w
    return torch.stack([cols.clamp(0, width - 1), rows.clamp(0, height - 1)], dim=-1)


def grid_region(feats: FrameFeatures, low_res: Tensor, threshold: float, margin: int) -> Tensor:
    """(h, w) bool feature cells where a (4h, 4w) low-resolution mask (logits above
    ``threshold``) has any pixel, grown by ``margin`` cells on every side."""
    scale = low_res.shape[-1] // feats.grid_size[1]
    inside = (low_res > threshold).to(torch.float32).reshape(1, 1, *low_res.shape[-2:])
    cells = F.max_pool2d(inside, scale)
    return grow_region(cells[0, 0] > 0, margin)


def distractor_points(
    feats: FrameFeatures, sim_grid: Tensor, excluded: Tensor, count: int, ratio: float
) -> Tensor:
    """Distractor-aware negative points of one target: (n <= count, 2) float64 (x, y) frame pixels.

    The local maxima (3 x 3) of its (h, w) cell similarities that lie in the image content,
    outside the (h, w) bool ``excluded`` cells (where the object is expected), and reach
    ``ratio`` x its highest similarity, most similar first; each point is its cell's centre.
    """
    rows, cols = feats.content_grid
    grid = sim_grid.clone()
    content = torch.zeros_like(excluded)
    content[:rows, :cols] = True
    grid[~content] = -torch.inf
    pooled = F.max_pool2d(grid[None, None], 3, stride=1, padding=1)[0, 0]
    peak = grid.max()
    candidate = (grid == pooled) & content & ~excluded & (grid >= ratio * peak)
    cells = torch.nonzero(candidate)
    if cells.shape[0] == 0:
        return torch.zeros((0, 2), dtype=torch.float64, device=sim_grid.device)
    order = grid[candidate].argsort(descending=True)[:count]
    return cell_centres(feats, cells[order])
