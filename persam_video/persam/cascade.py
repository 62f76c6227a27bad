"""PerSAM's decoding on one frame: target-guided first step and cascaded post-refinement.

:func:`segment_objects` runs, for K target embeddings (K, C) on one frame: the location prior
(:mod:`~persam_video.persam.prior`) -> the first decoding step (guided attention and semantic
prompting as configured, plus each object's extra box/points) -> cascaded post-refinement
(mask prompt, then box prompt of the refined mask). Objects with the same prompt structure
share one decoder call per step. The image and video modes both call it; beyond it, only the
video layer's rules on its masks (:mod:`persam_video.video.guards`: the jump guard decodes
again with :func:`decode`, on the grid of :func:`working_resolution`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from torch import Tensor

from persam_video.config import DecodeConfig, PerSAMConfig
from persam_video.persam.features import FrameFeatures
from persam_video.persam.geometry import (
    low_res_area,
    low_res_box,
    mask_box,
    to_input_coords,
    upsample_logits,
)
from persam_video.persam.guided_decoder import predict_masks
from persam_video.persam.prior import (
    NEGATIVE,
    POSITIVE,
    attention_bias,
    distractor_points,
    grid_region,
    peak_similarity,
    search_windows,
    select_points,
    similarity_grid,
    similarity_map,
)


@dataclass(frozen=True)
class ExtraPrompt:
    """Prompts an object gets beyond its location prior (the video tracker provides them)."""

    #: (x0, y0, x1, y1) box in frame pixels, used in the first decoding step.
    box: tuple[float, float, float, float] | None = None
    #: Extra positive points (x, y) in frame pixels, used in every step.
    points: tuple[tuple[float, float], ...] = ()
    #: (1, 4h, 4w) low-resolution logits given to the first step as its mask prompt (the
    #: temporal prior), or None.
    mask_prompt: Tensor | None = None
    #: (1, 4h, 4w) low-resolution logits of where the object is expected (its previous mask,
    #: or that mask carried to this frame), or None: the region distractor-aware negatives
    #: avoid, and what the video layer's jump guard and detached parts compare with
    #: (:mod:`persam_video.video.guards`).
    expected: Tensor | None = None
    #: Whether the jump guard (``decode.jump_iou``, applied by the video layer) may undo a jump
    #: of this object (the video tracker allows it only while the object's track is unbroken).
    guard: bool = True


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
    #: Whether the final mask left the region where the object was expected (IoU below
    #: ``decode.jump_iou``, when that is on) and the jump guard did not undo it. Set by the
    #: video layer's jump guard (:func:`persam_video.video.guards.guard_predictions`); always
    #: False from :func:`segment_objects`.
    jumped: bool = False


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
    coords = to_input_coords(points, feats)
    box_coords = None
    if boxes is not None:
        box_coords = to_input_coords(boxes.reshape(-1, 2, 2).to(torch.float64), feats)
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
        hq_features=feats.hq,
    )


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
    mask_inputs: list[Tensor | None] | None = None  # K x (1, 4h, 4w) mask prompts, or None


def first_step_prompts(
    sam: Sam,
    feats: FrameFeatures,
    embeddings: Tensor,
    config: PerSAMConfig,
    extra: list[ExtraPrompt] | None = None,
) -> FirstStep:
    """Location prior, guidance and extra prompts of K target embeddings (K, C) on one frame."""
    k = embeddings.shape[0]
    extra = extra if extra is not None else [ExtraPrompt()] * k
    if len(extra) != k:
        raise ValueError(f"got {len(extra)} extra prompts for {k} embeddings")
    prior, dec = config.prior, config.decode
    sim_grid = similarity_grid(feats, embeddings)
    sim_map = similarity_map(sam, feats, sim_grid)
    wanted = prior.num_positive + prior.num_negative
    if wanted > sim_map[0].numel():
        raise ValueError(
            f"prior.num_positive + prior.num_negative = {wanted} points, but the frame has only "
            f"{sim_map[0].numel()} pixels"
        )
    boxes = [e.box for e in extra]
    windows = search_windows(sim_map.shape[-2:], boxes, prior.search_window, sim_map.device)
    prior_points, prior_labels = select_points(
        sim_map, prior.num_positive, prior.num_negative, windows
    )
    points, labels = [], []
    for i, ex in enumerate(extra):
        extra_xy = torch.tensor(ex.points, dtype=torch.float64, device=sim_map.device)
        extra_labels = torch.full((len(ex.points),), POSITIVE, device=sim_map.device)
        points.append(torch.cat([prior_points[i], extra_xy.reshape(-1, 2)]))
        labels.append(torch.cat([prior_labels[i], extra_labels]))
    if prior.distractor_negatives:
        for i, negatives in enumerate(_distractor_negatives(sam, feats, sim_grid, extra, config)):
            points[i] = torch.cat([points[i], negatives])
            labels[i] = torch.cat(
                [labels[i], torch.full((negatives.shape[0],), NEGATIVE, device=sim_map.device)]
            )
    bias = None
    if dec.guided_attention:
        bias = attention_bias(feats, sim_grid, sim_map, dec.guidance_map)
    return FirstStep(
        points=points,
        labels=labels,
        boxes=[None if e.box is None else torch.tensor(e.box, dtype=torch.float64) for e in extra],
        bias=bias,
        semantic=embeddings if dec.semantic_prompt else None,
        sim_grid=sim_grid,
        sim_map=sim_map,
        mask_inputs=[e.mask_prompt for e in extra]
        if any(e.mask_prompt is not None for e in extra)
        else None,
    )


def _distractor_negatives(
    sam: Sam,
    feats: FrameFeatures,
    sim_grid: Tensor,
    extra: list[ExtraPrompt],
    config: PerSAMConfig,
) -> list[Tensor]:
    """Per object, (n, 2) float64 (x, y) extra negative points: distractor peaks outside its
    expected region (none without an expected region)."""
    prior = config.prior
    result = []
    for i, ex in enumerate(extra):
        if ex.expected is None:
            result.append(torch.zeros((0, 2), dtype=torch.float64, device=sim_grid.device))
            continue
        excluded = grid_region(feats, ex.expected[0], sam.mask_threshold, prior.distractor_margin)
        result.append(
            distractor_points(
                feats, sim_grid[i], excluded, prior.distractor_negatives, prior.distractor_ratio
            )
        )
    return result


def multimask_outputs(sam: Sam, feats: FrameFeatures, first: FirstStep) -> tuple[Tensor, Tensor]:
    """The three multimask outputs of the first step: (K, 3, H, W) logits and (K, 3) IoUs.

    What PerSAM-F learns its mask weights on.
    """
    low, iou = _decode_all(sam, feats, first, first.boxes, None, first.bias, first.semantic)
    return upsample_logits(sam, feats, low[:, MULTIMASK]), iou[:, MULTIMASK]


def segment_objects(
    sam: Sam,
    feats: FrameFeatures,
    embeddings: Tensor,
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
    where = working_resolution(feats, config)
    if where.scaled:
        return _at_working_resolution(sam, where, embeddings, config, extra, mask_weights)
    return _segment(sam, feats, embeddings, config, extra, mask_weights)


@dataclass(frozen=True)
class WorkingResolution:
    """The pixel grid on which :func:`segment_objects` computes a frame's frame-size maps.

    That is the frame's own, or with ``decode.work_size`` set and a frame whose longest side
    exceeds it, a smaller one of the same aspect: the features are the same (SAM sees the same
    resized input); only the pixel grid of the frame-size maps shrinks.
    """

    #: The frame's features (its own geometry).
    frame: FrameFeatures
    #: The same features on the working grid (``frame`` itself when not scaled).
    work: FrameFeatures
    #: (x, y) working pixels per frame pixel ((1.0, 1.0) when not scaled).
    scale: tuple[float, float] = (1.0, 1.0)

    @property
    def scaled(self) -> bool:
        """Whether the working grid is smaller than the frame."""
        return self.work is not self.frame

    def prompts(self, extra: list[ExtraPrompt]) -> list[ExtraPrompt]:
        """Prompts in frame pixels scaled into the working grid (boxes and points; the
        low-resolution prompts do not depend on the frame size). Unchanged when not scaled."""
        if not self.scaled:
            return extra
        scale_x, scale_y = self.scale
        return [
            dataclasses.replace(
                e,
                box=None
                if e.box is None
                else (
                    e.box[0] * scale_x,
                    e.box[1] * scale_y,
                    e.box[2] * scale_x,
                    e.box[3] * scale_y,
                ),
                points=tuple((x * scale_x, y * scale_y) for x, y in e.points),
            )
            for e in extra
        ]

    def to_frame(self, maps: Tensor) -> Tensor:
        """(K, h', w') float maps on the working grid, bilinearly resized to the frame's
        (K, H, W). Unchanged when not scaled."""
        if not self.scaled:
            return maps
        return F.interpolate(maps[None], self.frame.original_size, mode="bilinear")[0]

    def frame_logits(self, sam: Sam, low_res: Tensor) -> Tensor:
        """(K, 1, 4h, 4w) low-resolution logits to (K, H, W) float logits at the frame's
        resolution, as :func:`segment_objects` makes its final ``mask_logits``."""
        return self.to_frame(upsample_logits(sam, self.work, low_res)[:, 0])


def working_resolution(feats: FrameFeatures, config: PerSAMConfig) -> WorkingResolution:
    """Where :func:`segment_objects` computes the frame-size maps of a frame with ``feats``
    under ``config`` (``decode.work_size``)."""
    work = config.decode.work_size
    if not (work and max(feats.original_size) > work):
        return WorkingResolution(feats, feats)
    height, width = feats.original_size
    factor = work / max(height, width)
    work_size = (max(1, round(height * factor)), max(1, round(width * factor)))
    scale = (work_size[1] / width, work_size[0] / height)
    grid = dataclasses.replace(feats, original_size=work_size)
    return WorkingResolution(feats, grid, scale)


def _at_working_resolution(
    sam: Sam,
    where: WorkingResolution,
    embeddings: Tensor,
    config: PerSAMConfig,
    extra: list[ExtraPrompt] | None,
    mask_weights: list[Tensor | None] | None,
) -> list[Prediction]:
    """:func:`_segment` on the working grid of ``where``; results mapped back to the frame.

    Prompts are scaled into the working grid, points and frame-size maps back out of it.
    """
    scaled = None if extra is None else where.prompts(extra)
    preds = _segment(sam, where.work, embeddings, config, scaled, mask_weights)
    scale_x, scale_y = where.scale
    back = torch.tensor([1 / scale_x, 1 / scale_y], dtype=torch.float64)
    logits = where.to_frame(torch.stack([p.mask_logits for p in preds]))
    similarity = where.to_frame(torch.stack([p.similarity for p in preds]))
    for i, pred in enumerate(preds):
        pred.mask_logits, pred.similarity = logits[i], similarity[i]
        pred.mask = logits[i] > sam.mask_threshold
        pred.points = pred.points * back.to(pred.points.device)
    return preds


def _segment(
    sam: Sam,
    feats: FrameFeatures,
    embeddings: Tensor,
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
    k = embeddings.shape[0]
    weights = mask_weights if mask_weights is not None else [None] * k
    dec = config.decode
    first = first_step_prompts(sam, feats, embeddings, config, extra)
    step = _keep_first(sam, feats, first, weights, dec)
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
        # The refinement steps get no guidance and no semantic prompt (as persam.py).
        low, iou = _decode_all(sam, feats, first, boxes, step.low_res, None, None, only=members)
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
    low, iou = _decode_all(
        sam, feats, first, first.boxes, first.mask_inputs, first.bias, first.semantic
    )
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
    mask_inputs: Tensor | list[Tensor | None] | None,
    bias: Tensor | None,
    semantic: Tensor | None,
    *,
    only: list[int] | None = None,
) -> tuple[Tensor, Tensor]:
    """All four outputs for objects ``only`` (default all), batching equal prompt structures.

    ``mask_inputs``: (K, 1, 4h, 4w) mask prompts of all K objects, K of them or None each, or
    None. Returns (n, 4, 4h, 4w) low-resolution logits and (n, 4) IoUs in the order of ``only``.
    """
    indices = list(range(len(first.points))) if only is None else only
    masks = [None] * len(first.points) if mask_inputs is None else list(mask_inputs)
    groups: dict[tuple[int, bool, bool], list[int]] = {}
    for i in indices:
        key = (first.points[i].shape[0], boxes[i] is None, masks[i] is None)
        groups.setdefault(key, []).append(i)
    low_all, iou_all = {}, {}
    for members in groups.values():
        sel = torch.tensor(members, device=feats.embedding.device)
        low, iou = decode(
            sam,
            feats,
            torch.stack([first.points[i] for i in members]),
            torch.stack([first.labels[i] for i in members]),
            boxes=None if boxes[members[0]] is None else torch.stack([boxes[i] for i in members]),
            mask_inputs=None
            if masks[members[0]] is None
            else torch.stack([masks[i] for i in members]),
            attn_bias=None if bias is None else bias[sel],
            target_embedding=None if semantic is None else semantic[sel],
        )
        for row, i in enumerate(members):
            low_all[i], iou_all[i] = low[row], iou[row]
    return torch.stack([low_all[i] for i in indices]), torch.stack([iou_all[i] for i in indices])
