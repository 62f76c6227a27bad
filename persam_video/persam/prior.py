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


def select_points(sim_map: Tensor, num_positive: int, num_negative: int) -> tuple[Tensor, Tensor]:
    """Point prompts from (K, H, W) similarity maps.

    Returns:
        points: (K, num_positive + num_negative, 2) float64 (x, y) pixel coordinates: the
        ``num_positive`` most similar pixels first (most similar first), then the
        ``num_negative`` least similar.
        labels: (K, N) int64, 1 for positive and 0 for negative points.
    """
    width = sim_map.shape[-1]
    flat = sim_map.flatten(1)
    index = flat.topk(num_positive, dim=1).indices
    if num_negative:
        lowest = flat.topk(num_negative, dim=1, largest=False).indices
        index = torch.cat([index, lowest], dim=1)
    points = torch.stack([index % width, index // width], dim=-1).to(torch.float64)
    labels = torch.full(index.shape, POSITIVE, dtype=torch.int64, device=sim_map.device)
    labels[:, num_positive:] = NEGATIVE
    return points, labels


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
