"""The PerSAM math, shared by image and video modes.

Pure functions over tensors, batched over K target objects of one frame:

1. :func:`encode_image`: SAM image features of a frame (:class:`FrameFeatures`).
2. :func:`reference_cells` + :func:`pool_embedding`: a target embedding from a mask.
3. :func:`similarity_grid`, :func:`similarity_map`: location confidence (cosine similarity).
4. :func:`select_points`: positive and negative point prompts (x, y order).
5. :func:`attention_bias`: the target-guided attention map.
6. :func:`segment_objects`: guided decoding and cascaded post-refinement.

Coordinates are (x, y) pixels of the original frame; sizes are (H, W).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide
from torch import Tensor

from persam_video.config import PerSAMConfig, PriorConfig
from persam_video.decoder import predict_masks

#: SAM's mask decoder outputs logits at this multiple of the embedding grid resolution.
LOW_RES_SCALE = 4
#: Point label of a positive / negative click in SAM's prompt encoder.
POSITIVE, NEGATIVE = 1, 0


@dataclass(frozen=True)
class FrameFeatures:
    """SAM image features of one frame, with the geometry needed to map back to pixels."""

    #: (1, C, h, w) output of SAM's image encoder.
    embedding: Tensor
    #: (H, W) of the frame as given.
    original_size: tuple[int, int]
    #: (H', W') after resizing the longest side to ``image_size``, before padding.
    input_size: tuple[int, int]
    #: Side of SAM's square, padded encoder input.
    image_size: int

    @property
    def grid_size(self) -> tuple[int, int]:
        """(h, w) of the embedding grid."""
        return (int(self.embedding.shape[-2]), int(self.embedding.shape[-1]))

    @property
    def content_grid(self) -> tuple[int, int]:
        """(rows, cols) of grid cells that hold image content (the rest is padding)."""
        h, w = self.grid_size
        return (
            math.ceil(self.input_size[0] * h / self.image_size),
            math.ceil(self.input_size[1] * w / self.image_size),
        )


@dataclass(frozen=True)
class ExtraPrompt:
    """Prompts an object gets beyond its location prior (the video tracker provides them)."""

    #: (x0, y0, x1, y1) box in frame pixels, used in the first decoding step.
    box: tuple[float, float, float, float] | None = None
    #: Extra positive points (x, y) in frame pixels, used in every step.
    points: tuple[tuple[float, float], ...] = ()


@dataclass
class Prediction:
    """PerSAM's output for one object on one frame (tensors on the model's device)."""

    #: (H, W) bool final mask.
    mask: Tensor
    #: (H, W) float final mask logits at frame resolution (positive = object).
    mask_logits: Tensor
    #: (1, 4h, 4w) final low-resolution logits (what SAM takes back as a mask prompt).
    low_res_logits: Tensor
    #: Predicted IoU of the final mask.
    score: float
    #: (N, 2) float64 point prompts (x, y) in frame pixels, and (N,) int64 labels (1 fg, 0 bg).
    points: Tensor
    labels: Tensor
    #: (H, W) location confidence: cosine similarity to the target, upsampled to the frame.
    similarity: Tensor
    #: Highest cosine similarity of the target to any feature cell with image content.
    peak_similarity: float


# ----------------------------------------------------------------------------- features
def encode_image(sam: Sam, rgb: np.ndarray) -> FrameFeatures:
    """Run SAM's image encoder on an (H, W, 3) uint8 RGB frame, as ``SamPredictor.set_image``."""
    image_size = sam.image_encoder.img_size
    resized = ResizeLongestSide(image_size).apply_image(rgb)
    tensor = torch.as_tensor(resized, device=sam.device).permute(2, 0, 1).contiguous()[None]
    embedding = sam.image_encoder(sam.preprocess(tensor))
    return FrameFeatures(
        embedding=embedding,
        original_size=(int(rgb.shape[0]), int(rgb.shape[1])),
        input_size=(int(resized.shape[0]), int(resized.shape[1])),
        image_size=image_size,
    )


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
        values = _pad_to_square(values, feats.image_size)
        sampled = F.interpolate(values, size=grid, mode="bilinear", align_corners=False)
        return sampled[0, 0] > 0
    soft = torch.as_tensor(mask, device=device, dtype=torch.float32)[None, None]
    soft = F.interpolate(soft, size=feats.input_size, mode="bilinear", antialias=True)
    coverage = F.adaptive_avg_pool2d(_pad_to_square(soft, feats.image_size), grid)[0, 0]
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


# ----------------------------------------------------------------------------- location prior
def similarity_grid(feats: FrameFeatures, targets: Tensor) -> Tensor:
    """Cosine similarity of each target (K, C) to each feature cell: (K, h, w)."""
    features = F.normalize(feats.embedding[0], dim=0)  # (C, h, w)
    return torch.einsum("kc,chw->khw", F.normalize(targets, dim=-1), features)


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


# ----------------------------------------------------------------------------- decoding
def decode(
    sam: Sam,
    feats: FrameFeatures,
    points: Tensor,
    labels: Tensor,
    *,
    boxes: Tensor | None = None,
    mask_inputs: Tensor | None = None,
    attn_bias: Tensor | None = None,
    target_embedding: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One batched decoder pass for B prompts of the same structure on one frame.

    Args:
        points: (B, N, 2) float64 (x, y) frame pixels; labels: (B, N) int64.
        boxes: (B, 4) (x0, y0, x1, y1) frame pixels, or None.
        mask_inputs: (B, 1, 4h, 4w) low-resolution logits used as mask prompts, or None.
        attn_bias: (B, h * w) target-guided attention, or None.
        target_embedding: (B, C) target-semantic prompt, or None.

    Returns:
        (B, 4, 4h, 4w) low-resolution logits (single-mask output, then the three multimask
        outputs) and (B, 4) predicted IoUs.
    """
    coords = _to_input_coords(points, feats)
    box_coords = None
    if boxes is not None:
        box_coords = _to_input_coords(boxes.reshape(-1, 2, 2).to(torch.float64), feats)
        box_coords = box_coords.reshape(-1, 4)
    sparse, dense = sam.prompt_encoder(points=(coords, labels), boxes=box_coords, masks=mask_inputs)
    return predict_masks(
        sam.mask_decoder,
        feats.embedding,
        sam.prompt_encoder.get_dense_pe(),
        sparse,
        dense,
        attn_bias=attn_bias,
        target_embedding=target_embedding,
    )


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


@dataclass
class _Step:
    """The kept output of one decoding step for K objects."""

    low_res: Tensor  # (K, 1, 4h, 4w)
    full: Tensor  # (K, H, W) logits
    score: Tensor  # (K,)

    def updated(self, rows: list[int], other: _Step) -> _Step:
        """A copy with objects ``rows`` replaced by the rows of ``other`` (in that order)."""
        low_res, full, score = self.low_res.clone(), self.full.clone(), self.score.clone()
        low_res[rows], full[rows], score[rows] = other.low_res, other.full, other.score
        return _Step(low_res=low_res, full=full, score=score)


def segment_objects(
    sam: Sam,
    feats: FrameFeatures,
    targets: Tensor,
    config: PerSAMConfig,
    extra: list[ExtraPrompt] | None = None,
) -> list[Prediction]:
    """PerSAM on one frame for K target embeddings (K, C): one :class:`Prediction` per target.

    Location prior -> first decoding step (guided attention and semantic prompting as configured,
    plus each object's extra box/points) -> cascaded post-refinement (mask prompt, then box prompt
    of the refined mask). Objects with the same prompt structure share one decoder call per step.
    """
    k = targets.shape[0]
    extra = extra if extra is not None else [ExtraPrompt()] * k
    if len(extra) != k:
        raise ValueError(f"got {len(extra)} extra prompts for {k} targets")
    prior, dec = config.prior, config.decode
    sim_grid = similarity_grid(feats, targets)
    sim_map = similarity_map(sam, feats, sim_grid)
    prior_points, prior_labels = select_points(sim_map, prior.num_positive, prior.num_negative)
    points, labels = [], []
    for i, ex in enumerate(extra):
        extra_xy = torch.tensor(ex.points, dtype=torch.float64, device=sim_map.device)
        extra_labels = torch.full((len(ex.points),), POSITIVE, device=sim_map.device)
        points.append(torch.cat([prior_points[i], extra_xy.reshape(-1, 2)]))
        labels.append(torch.cat([prior_labels[i], extra_labels]))
    bias = (
        attention_bias(feats, sim_grid, sim_map, dec.guidance_map) if dec.guided_attention else None
    )
    semantic = targets if dec.semantic_prompt else None
    first_boxes = [
        None if ex.box is None else torch.tensor(ex.box, dtype=torch.float64) for ex in extra
    ]

    run = partial(_run_step, sam, feats, points, labels)
    step = run(
        first_boxes,
        mask_inputs=None,
        bias=bias,
        semantic=semantic,
        multimask=dec.first_multimask,
        pick=dec.first_pick,
    )
    later = {
        "bias": bias if dec.guide_refinement else None,
        "semantic": semantic if dec.guide_refinement else None,
    }
    if dec.refine_steps >= 1:
        step = run([None] * k, mask_inputs=step.low_res, multimask=True, pick="score", **later)
    if dec.refine_steps >= 2:
        # Objects whose refined mask is empty have no box: they keep the previous step's output.
        boxes = [mask_box(step.full[i] > sam.mask_threshold) for i in range(k)]
        boxed = [i for i, box in enumerate(boxes) if box is not None]
        if boxed:
            refined = run(
                boxes, mask_inputs=step.low_res, multimask=True, pick="score", only=boxed, **later
            )
            step = step.updated(boxed, refined)

    peaks = peak_similarity(feats, sim_grid)
    return [
        Prediction(
            mask=step.full[i] > sam.mask_threshold,
            mask_logits=step.full[i],
            low_res_logits=step.low_res[i],
            score=float(step.score[i]),
            points=points[i],
            labels=labels[i],
            similarity=sim_map[i],
            peak_similarity=float(peaks[i]),
        )
        for i in range(k)
    ]


def _run_step(
    sam: Sam,
    feats: FrameFeatures,
    points: list[Tensor],
    labels: list[Tensor],
    boxes: list[Tensor | None],
    *,
    mask_inputs: Tensor | None,
    bias: Tensor | None,
    semantic: Tensor | None,
    multimask: bool,
    pick: str,
    only: list[int] | None = None,
) -> _Step:
    """Decode objects ``only`` (default all), batching equal prompt structures; keep one output.

    Returns the kept output of the objects ``only``, in that order.
    """
    indices = list(range(len(points))) if only is None else only
    groups: dict[tuple[int, bool], list[int]] = {}
    for i in indices:
        groups.setdefault((points[i].shape[0], boxes[i] is None), []).append(i)
    low_all, iou_all = {}, {}
    for members in groups.values():
        sel = torch.tensor(members, device=feats.embedding.device)
        low, iou = decode(
            sam,
            feats,
            torch.stack([points[i] for i in members]),
            torch.stack([labels[i] for i in members]),
            boxes=None if boxes[members[0]] is None else torch.stack([boxes[i] for i in members]),
            mask_inputs=None if mask_inputs is None else mask_inputs[sel],
            attn_bias=None if bias is None else bias[sel],
            target_embedding=None if semantic is None else semantic[sel],
        )
        for row, i in enumerate(members):
            low_all[i], iou_all[i] = low[row], iou[row]
    low = torch.stack([low_all[i] for i in indices])
    iou = torch.stack([iou_all[i] for i in indices])
    outputs = slice(1, None) if multimask else slice(0, 1)
    low, iou = low[:, outputs], iou[:, outputs]
    full = upsample_logits(sam, feats, low)
    if pick == "score":
        choice = iou.argmax(dim=1)
    elif pick == "largest":
        choice = (full > sam.mask_threshold).flatten(2).sum(-1).argmax(dim=1)
    else:
        choice = torch.zeros(len(indices), dtype=torch.int64, device=iou.device)
    rows = torch.arange(len(indices), device=iou.device)
    return _Step(
        low_res=low[rows, choice][:, None], full=full[rows, choice], score=iou[rows, choice]
    )


def _to_input_coords(xy: Tensor, feats: FrameFeatures) -> Tensor:
    """(..., 2) float64 frame (x, y) to SAM's resized-input frame, as float32.

    Computed in float64 and rounded once, exactly like ``SamPredictor`` (numpy, then float32).
    """
    (old_h, old_w), (new_h, new_w) = feats.original_size, feats.input_size
    scale = torch.tensor([new_w / old_w, new_h / old_h], dtype=torch.float64, device=xy.device)
    return (xy.to(torch.float64) * scale).to(torch.float32).to(feats.embedding.device)


def _pad_to_square(x: Tensor, size: int) -> Tensor:
    """Zero-pad (..., h, w) at the bottom and right to (..., size, size), like SAM's preprocess."""
    return F.pad(x, (0, size - x.shape[-1], 0, size - x.shape[-2]))
