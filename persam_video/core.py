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
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide
from torch import Tensor

from persam_video.config import DecodeConfig, PerSAMConfig, PriorConfig
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
        return self.content_cells(self.grid_size)

    def content_cells(self, grid: tuple[int, int]) -> tuple[int, int]:
        """(rows, cols) of the cells of an (h, w) grid over SAM's input that hold image content."""
        return (
            math.ceil(self.input_size[0] * grid[0] / self.image_size),
            math.ceil(self.input_size[1] * grid[1] / self.image_size),
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
def preprocess(sam: Sam, frames: Sequence[np.ndarray]) -> tuple[Tensor, list[tuple[int, int]]]:
    """SAM's encoder input for (H, W, 3) uint8 RGB frames, as ``SamPredictor.set_image`` makes it.

    Returns the (B, 3, S, S) normalized, padded batch and each frame's (H', W') after resizing
    its longest side to S. Frames of different sizes may be mixed.
    """
    transform = ResizeLongestSide(sam.image_encoder.img_size)
    resized = [transform.apply_image(frame) for frame in frames]
    inputs = [
        sam.preprocess(torch.as_tensor(r, device=sam.device).permute(2, 0, 1).contiguous()[None])
        for r in resized
    ]
    return torch.cat(inputs), [(int(r.shape[0]), int(r.shape[1])) for r in resized]


def encode_image(sam: Sam, rgb: np.ndarray) -> FrameFeatures:
    """Run SAM's image encoder on an (H, W, 3) uint8 RGB frame, as ``SamPredictor.set_image``."""
    inputs, (input_size,) = preprocess(sam, [rgb])
    return FrameFeatures(
        embedding=sam.image_encoder(inputs),
        original_size=(int(rgb.shape[0]), int(rgb.shape[1])),
        input_size=input_size,
        image_size=sam.image_encoder.img_size,
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


@dataclass
class _Step:
    """The kept output of one decoding step for K objects."""

    low_res: Tensor  # (K, 1, 4h, 4w)
    score: Tensor  # (K,)
    full: Tensor | None = None  # (K, H, W) logits, once computed

    def full_logits(self, sam: Sam, feats: FrameFeatures) -> Tensor:
        """(K, H, W) frame-size logits (computed once)."""
        if self.full is None:
            self.full = upsample_logits(sam, feats, self.low_res)[:, 0]
        return self.full

    def boxes(self, sam: Sam, feats: FrameFeatures, intermediate: str) -> list[Tensor | None]:
        """Each object's mask box in frame pixels (None for an empty mask)."""
        if intermediate == "low":
            return [low_res_box(sam, feats, low) for low in self.low_res]
        full = self.full_logits(sam, feats)
        return [mask_box(logits > sam.mask_threshold) for logits in full]

    def updated(self, rows: list[int], low_res: Tensor, score: Tensor) -> _Step:
        """A copy with objects ``rows`` given new outputs (frame-size logits recomputed later)."""
        new_low, new_score = self.low_res.clone(), self.score.clone()
        new_low[rows], new_score[rows] = low_res, score
        return _Step(new_low, new_score)


@dataclass
class FirstStep:
    """Prompts of the first decoding step for K objects, from their location prior."""

    points: list[Tensor]  # K x (N_k, 2) float64 (x, y)
    labels: list[Tensor]  # K x (N_k,) int64
    boxes: list[Tensor | None]  # K x (4,) float64 or None
    bias: Tensor | None  # (K, h * w) target-guided attention
    semantic: Tensor | None  # (K, C) target-semantic prompt
    sim_grid: Tensor  # (K, h, w)
    sim_map: Tensor  # (K, H, W)


def first_step_prompts(
    sam: Sam,
    feats: FrameFeatures,
    targets: Tensor,
    config: PerSAMConfig,
    extra: list[ExtraPrompt] | None = None,
) -> FirstStep:
    """Location prior, guidance and extra prompts of K target embeddings (K, C) on one frame."""
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
    bias = None
    if dec.guided_attention:
        bias = attention_bias(feats, sim_grid, sim_map, dec.guidance_map)
    return FirstStep(
        points=points,
        labels=labels,
        boxes=[None if e.box is None else torch.tensor(e.box, dtype=torch.float64) for e in extra],
        bias=bias,
        semantic=targets if dec.semantic_prompt else None,
        sim_grid=sim_grid,
        sim_map=sim_map,
    )


def multimask_outputs(sam: Sam, feats: FrameFeatures, first: FirstStep) -> tuple[Tensor, Tensor]:
    """The three multimask outputs of the first step: (K, 3, H, W) logits and (K, 3) IoUs.

    What PerSAM-F learns its mask weights on.
    """
    low, iou = _decode_all(sam, feats, first, first.boxes, None, first.bias, first.semantic)
    return upsample_logits(sam, feats, low[:, MULTIMASK]), iou[:, MULTIMASK]


def segment_objects(
    sam: Sam,
    feats: FrameFeatures,
    targets: Tensor,
    config: PerSAMConfig,
    extra: list[ExtraPrompt] | None = None,
    mask_weights: list[Tensor | None] | None = None,
) -> list[Prediction]:
    """PerSAM on one frame for K target embeddings (K, C): one :class:`Prediction` per target.

    Between decoding steps, masks stay at SAM's low resolution with ``decode.intermediate: low``
    (boxes from :func:`low_res_box`; only the final logits are upsampled to the frame) or are
    upsampled to the frame as in the official code with ``frame``. With ``decode.work_size`` set
    and a frame whose longest side exceeds it, the frame-size maps are computed at that smaller
    working resolution (see :func:`_at_working_resolution`).
    """
    work = config.decode.work_size
    if work and max(feats.original_size) > work:
        return _at_working_resolution(sam, feats, targets, config, extra, mask_weights)
    return _segment(sam, feats, targets, config, extra, mask_weights)


def _at_working_resolution(
    sam: Sam,
    feats: FrameFeatures,
    targets: Tensor,
    config: PerSAMConfig,
    extra: list[ExtraPrompt] | None,
    mask_weights: list[Tensor | None] | None,
) -> list[Prediction]:
    """:func:`_segment` on a frame geometry scaled to ``decode.work_size``; results mapped back.

    The features are the same (SAM sees the same resized input); only the pixel grid of the
    frame-size maps shrinks. Prompts are scaled into it, points and logits back out of it.
    """
    height, width = feats.original_size
    factor = config.decode.work_size / max(height, width)
    work_size = (max(1, round(height * factor)), max(1, round(width * factor)))
    scale_x, scale_y = work_size[1] / width, work_size[0] / height
    work = FrameFeatures(feats.embedding, work_size, feats.input_size, feats.image_size)
    scaled = None
    if extra is not None:
        scaled = [
            ExtraPrompt(
                box=None if e.box is None else (e.box[0] * scale_x, e.box[1] * scale_y,
                                                e.box[2] * scale_x, e.box[3] * scale_y),
                points=tuple((x * scale_x, y * scale_y) for x, y in e.points),
            )
            for e in extra
        ]  # fmt: skip
    preds = _segment(sam, work, targets, config, scaled, mask_weights)
    back = torch.tensor([1 / scale_x, 1 / scale_y], dtype=torch.float64)
    logits = F.interpolate(
        torch.stack([p.mask_logits for p in preds])[None], feats.original_size, mode="bilinear"
    )[0]
    similarity = F.interpolate(
        torch.stack([p.similarity for p in preds])[None], feats.original_size, mode="bilinear"
    )[0]
    for i, pred in enumerate(preds):
        pred.mask_logits, pred.similarity = logits[i], similarity[i]
        pred.mask = logits[i] > sam.mask_threshold
        pred.points = pred.points * back.to(pred.points.device)
    return preds


def _segment(
    sam: Sam,
    feats: FrameFeatures,
    targets: Tensor,
    config: PerSAMConfig,
    extra: list[ExtraPrompt] | None = None,
    mask_weights: list[Tensor | None] | None = None,
) -> list[Prediction]:
    """:func:`segment_objects` at the frame's own resolution.

    Location prior -> first decoding step (guided attention and semantic prompting as configured,
    plus each object's extra box/points) -> cascaded post-refinement (mask prompt, then box prompt
    of the refined mask). Objects with the same prompt structure share one decoder call per step.

    ``mask_weights`` (PerSAM-F): per object None or (3,) weights of the three multimask outputs.
    Such an object's first step is the weighted sum of those outputs, and, as in the official
    PerSAM-F, its first refinement step also gets the box of that mask.
    """
    k = targets.shape[0]
    weights = mask_weights if mask_weights is not None else [None] * k
    dec = config.decode
    first = first_step_prompts(sam, feats, targets, config, extra)
    step = _keep_first(sam, feats, first, weights, dec)
    later_bias = first.bias if dec.guide_refinement else None
    later_semantic = first.semantic if dec.guide_refinement else None
    for refinement in range(dec.refine_steps):
        # Step 2 (and step 1 after a fine-tuned first step) adds the box of the current mask;
        # an object whose mask is empty has no box and keeps the current output.
        if refinement == 0:
            needs_box = any(w is not None for w in weights)
            all_boxes = step.boxes(sam, feats, dec.intermediate) if needs_box else [None] * k
            boxes = [None if w is None else all_boxes[i] for i, w in enumerate(weights)]
            members = [i for i, w in enumerate(weights) if w is None or boxes[i] is not None]
        else:
            boxes = step.boxes(sam, feats, dec.intermediate)
            members = [i for i, box in enumerate(boxes) if box is not None]
        if not members:
            continue
        low, iou = _decode_all(
            sam, feats, first, boxes, step.low_res, later_bias, later_semantic, only=members
        )
        low, iou = low[:, MULTIMASK], iou[:, MULTIMASK]
        best = iou.argmax(dim=1)
        rows = torch.arange(len(members), device=best.device)
        step = step.updated(members, low[rows, best][:, None], iou[rows, best])

    full = step.full_logits(sam, feats)
    peaks = peak_similarity(feats, first.sim_grid)
    return [
        Prediction(
            mask=full[i] > sam.mask_threshold,
            mask_logits=full[i],
            low_res_logits=step.low_res[i],
            score=float(step.score[i]),
            points=first.points[i],
            labels=first.labels[i],
            similarity=first.sim_map[i],
            peak_similarity=float(peaks[i]),
        )
        for i in range(k)
    ]


#: Index of SAM's single-mask output and slice of its three multimask outputs.
SINGLE = slice(0, 1)
MULTIMASK = slice(1, None)


def _keep_first(
    sam: Sam,
    feats: FrameFeatures,
    first: FirstStep,
    weights: list[Tensor | None],
    dec: DecodeConfig,
) -> _Step:
    """Decode the first step and keep one output per object (or the PerSAM-F weighted sum)."""
    low, iou = _decode_all(sam, feats, first, first.boxes, None, first.bias, first.semantic)
    k = low.shape[0]
    rows = torch.arange(k, device=low.device)
    tuned = [i for i, w in enumerate(weights) if w is not None]
    low_kept, iou_kept = low[:, SINGLE][:, 0], iou[:, 0]
    full_kept = None  # frame-size logits of the kept outputs, when already computed
    if dec.first_multimask:
        multi_low, multi_iou = low[:, MULTIMASK], iou[:, MULTIMASK]
        if dec.first_pick == "score":
            choice = multi_iou.argmax(dim=1)
        elif dec.first_pick == "largest" and dec.intermediate == "low":
            choice = low_res_area(feats, multi_low, sam.mask_threshold).argmax(dim=1)
        elif dec.first_pick == "largest":
            multi_full = upsample_logits(sam, feats, multi_low)
            choice = (multi_full > sam.mask_threshold).flatten(2).sum(-1).argmax(dim=1)
            full_kept = multi_full[rows, choice]
        else:
            choice = torch.zeros(k, dtype=torch.int64, device=low.device)
        low_kept, iou_kept = multi_low[rows, choice], multi_iou[rows, choice]
    if tuned:
        full_kept = None  # the weighted sums replace some outputs: upsample them anew
        stacked = torch.stack([weights[i].to(low) for i in tuned])  # (T, 3)
        low_kept = low_kept.clone()
        iou_kept = iou_kept.clone()
        low_kept[tuned] = torch.einsum("tm,tmhw->thw", stacked, low[tuned][:, MULTIMASK])
        iou_kept[tuned] = torch.einsum("tm,tm->t", stacked, iou[tuned][:, MULTIMASK])
    return _Step(low_kept[:, None], iou_kept, full_kept)


def _decode_all(
    sam: Sam,
    feats: FrameFeatures,
    first: FirstStep,
    boxes: list[Tensor | None],
    mask_inputs: Tensor | None,
    bias: Tensor | None,
    semantic: Tensor | None,
    *,
    only: list[int] | None = None,
) -> tuple[Tensor, Tensor]:
    """All four outputs for objects ``only`` (default all), batching equal prompt structures.

    Returns (n, 4, 4h, 4w) low-resolution logits and (n, 4) IoUs in the order of ``only``.
    """
    indices = list(range(len(first.points))) if only is None else only
    groups: dict[tuple[int, bool], list[int]] = {}
    for i in indices:
        groups.setdefault((first.points[i].shape[0], boxes[i] is None), []).append(i)
    low_all, iou_all = {}, {}
    for members in groups.values():
        sel = torch.tensor(members, device=feats.embedding.device)
        low, iou = decode(
            sam,
            feats,
            torch.stack([first.points[i] for i in members]),
            torch.stack([first.labels[i] for i in members]),
            boxes=None if boxes[members[0]] is None else torch.stack([boxes[i] for i in members]),
            mask_inputs=None if mask_inputs is None else mask_inputs[sel],
            attn_bias=None if bias is None else bias[sel],
            target_embedding=None if semantic is None else semantic[sel],
        )
        for row, i in enumerate(members):
            low_all[i], iou_all[i] = low[row], iou[row]
    return torch.stack([low_all[i] for i in indices]), torch.stack([iou_all[i] for i in indices])


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
