"""The video rules on PerSAM's decoded masks: the jump guard and detached parts (pure functions).

Both compare an object's final low-resolution mask with where it was expected on this frame
(:attr:`~persam_video.persam.cascade.ExtraPrompt.expected`: its previous mask, or that mask
carried here), which only a video has:

- the **jump guard** (``decode.jump_iou``, :func:`guard_jumps`): a mask that left the expected
  region is decoded again from the temporal prompts alone, and that mask replaces the jump where
  it reproduces the expected region;
- **detached parts** (``decode.drop_detached``, :func:`drop_detached`): the pieces of a mask
  away from the expected region (:func:`detached_components`) are dropped.

:func:`guard_predictions` applies both to the :class:`~persam_video.persam.cascade.Prediction`
list of :func:`~persam_video.persam.cascade.segment_objects`, on the same pixel grid (see
:class:`~persam_video.persam.cascade.WorkingResolution`), so that the result is what the
cascade's last step followed by the rules gives.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import torch
from segment_anything.modeling import Sam
from torch import Tensor

from persam_video.config import PerSAMConfig
from persam_video.persam import cascade
from persam_video.persam.cascade import SINGLE, ExtraPrompt, Prediction, working_resolution
from persam_video.persam.components import grow_region
from persam_video.persam.features import FrameFeatures
from persam_video.persam.geometry import mask_iou

#: Pixel connectivity of a mask's parts (diagonal neighbours are connected).
CONNECTIVITY = 8

#: Low-resolution logit given at most to the pieces of a mask that are dropped: far enough
#: below SAM's threshold (0) that upsampling does not bring them back.
DROPPED_LOGIT = -10.0


@torch.inference_mode()
def guard_predictions(
    sam: Sam,
    feats: FrameFeatures,
    preds: list[Prediction],
    extra: list[ExtraPrompt],
    config: PerSAMConfig,
) -> list[Prediction]:
    """The jump guard, then dropping detached parts, as ``config.decode`` turns them on.

    Args:
        feats: the frame's features, as given to
            :func:`~persam_video.persam.cascade.segment_objects`.
        preds: K predictions of that call, one per object.
        extra: the K prompts of that call (in frame pixels).

    Returns:
        K predictions: ``preds`` where neither rule changed a mask; else copies with the new
        (1, 4h, 4w) ``low_res_logits`` (and, where the guard undid a jump, ``score``) of the
        objects changed and every object's (H, W) ``mask_logits`` and ``mask`` recomputed
        from the low-resolution logits as the cascade makes them. ``jumped`` is True where a
        jump stands. Runs in inference mode, as
        :meth:`PerSAM.segment_features <persam_video.persam.api.PerSAM.segment_features>` does.
    """
    dec = config.decode
    if not (dec.jump_iou or dec.drop_detached):
        return preds
    where = working_resolution(feats, config)
    prompts = where.prompts(extra)
    low_res = torch.stack([p.low_res_logits for p in preds])  # (K, 1, 4h, 4w), a copy
    scores: dict[int, float] = {}
    stands: set[int] = set()
    if dec.jump_iou:
        undone, stands = guard_jumps(sam, where.work, low_res, prompts, dec.jump_iou)
        for i, (logits, score) in undone.items():
            low_res[i], scores[i] = logits, score
    dropped: dict[int, Tensor] = {}
    if dec.drop_detached:
        dropped = drop_detached(sam, where.work, low_res, prompts, dec.detached_margin)
        for i, logits in dropped.items():
            low_res[i] = logits
    result = list(preds)
    if scores or dropped:
        # As the cascade does after a change to its last step: every object's frame-size logits
        # anew, all K in one batch (resizing a batch of another size can round differently).
        full = where.frame_logits(sam, low_res)  # (K, H, W)
        for i, pred in enumerate(preds):
            result[i] = dataclasses.replace(
                pred,
                mask=full[i] > sam.mask_threshold,
                mask_logits=full[i],
                low_res_logits=low_res[i],
                score=scores.get(i, pred.score),
            )
    for i in stands:
        result[i] = dataclasses.replace(result[i], jumped=True)
    return result


def guard_jumps(
    sam: Sam, feats: FrameFeatures, low_res: Tensor, extra: list[ExtraPrompt], threshold: float
) -> tuple[dict[int, tuple[Tensor, float]], set[int]]:
    """Undo the jumps of objects whose mask left where they were expected.

    An object whose mask jumped away from where it was expected (IoU with the expected region
    below ``threshold``) is decoded again from its temporal prompts alone (box and expected
    logits, SAM's single-mask output) where its ``guard`` allows; that mask replaces the jump
    where it agrees with the expected region (IoU at least ``threshold``) and more than the
    jump does (see ``decode.jump_iou``).

    Args:
        feats: the features on the grid the prompts' pixels are in.
        low_res: (K, 1, 4h, 4w) final low-resolution logits of K objects.
        extra: their K prompts (``expected``, ``box`` and ``guard`` are read).
        threshold: ``decode.jump_iou``, in (0, 1].

    Returns:
        The objects whose jump is undone, each with its new (1, 4h, 4w) logits and predicted
        IoU, and the objects whose jump stands.
    """
    low_h, low_w = low_res.shape[-2:]
    rows, cols = feats.content_cells((low_h, low_w))
    jumped, regions, expected, stands = [], [], [], set()
    for i, ex in enumerate(extra):
        if ex.expected is None or ex.box is None:
            continue
        region = ex.expected[0, :rows, :cols] > sam.mask_threshold
        if not bool(region.any()):
            continue
        mask = low_res[i, :, :rows, :cols] > sam.mask_threshold
        if float(mask_iou(mask, region)[0]) >= threshold:
            continue
        if ex.guard:
            jumped.append(i)
            regions.append(region)
            expected.append(ex.expected)
        else:
            stands.add(i)
    if not jumped:
        return {}, stands
    device = feats.embedding.device
    # Through the module, so that what wraps ``cascade.decode`` (tools/bench.py) sees it.
    low, iou = cascade.decode(
        sam,
        feats,
        torch.zeros((len(jumped), 0, 2), dtype=torch.float64, device=device),
        torch.zeros((len(jumped), 0), dtype=torch.int64, device=device),
        boxes=torch.tensor([extra[i].box for i in jumped], dtype=torch.float64),
        mask_inputs=torch.stack(expected),
    )
    undone = {}
    for row, (i, region) in enumerate(zip(jumped, regions, strict=True)):
        current = low_res[i, :, :rows, :cols] > sam.mask_threshold
        temporal = low[row, SINGLE, :rows, :cols] > sam.mask_threshold
        agreement = float(mask_iou(temporal, region)[0])
        # Kept where the object is still there (SAM alone reproduces the expected region),
        # not where it is gone (hidden, out of view): PerSAM's search decides then.
        if agreement >= threshold and agreement > float(mask_iou(current, region)[0]):
            undone[i] = (low[row, SINGLE], float(iou[row, 0]))
        else:
            stands.add(i)
    return undone, stands


def drop_detached(
    sam: Sam, feats: FrameFeatures, low_res: Tensor, extra: list[ExtraPrompt], margin: int
) -> dict[int, Tensor]:
    """Drop the pieces of masks away from where their objects were expected.

    An object whose final mask has pieces away from where it was expected (see
    :func:`detached_components` and ``decode.drop_detached``) loses those pieces: its
    low-resolution logits there are pushed to :data:`DROPPED_LOGIT` at most.

    Args:
        low_res: (K, 1, 4h, 4w) final low-resolution logits of K objects.
        extra: their K prompts (``expected`` is read; an object without one is left alone).
        margin: ``decode.detached_margin``, low-resolution cells around the expected region
            that still count as near it.

    Returns:
        The objects that lost pieces, each with its new (1, 4h, 4w) logits.
    """
    low_h, low_w = low_res.shape[-2:]
    rows, cols = feats.content_cells((low_h, low_w))
    dropped = {}
    for i, ex in enumerate(extra):
        if ex.expected is None:
            continue
        mask = low_res[i, 0, :rows, :cols] > sam.mask_threshold
        region = ex.expected[0, :rows, :cols] > sam.mask_threshold
        drop = detached_components(mask, region, margin)
        if bool(drop.any()):
            logits = low_res[i].clone()
            content = logits[0, :rows, :cols]  # a view: writes go to ``logits``
            content[drop] = content[drop].clamp(max=DROPPED_LOGIT)
            dropped[i] = logits
    return dropped


def detached_components(mask: Tensor, region: Tensor, margin: int) -> Tensor:
    """The parts of a mask that lie away from the expected region.

    A mask that spreads from the object onto a look-alike elsewhere (a copy, a same-coloured
    occluder, background clutter) often does so in a separate piece: the pieces that do not
    come near the region where the object was expected are found here, so that only the
    pieces that continue the object are kept.

    Args:
        mask: (h, w) bool mask.
        region: (h, w) bool region where the object was expected.
        margin: cells around ``region`` that still count as near it.

    Returns:
        (h, w) bool: the pixels of the mask's connected components that do not come within
        ``margin`` cells of ``region``, when the mask has several components and at least one
        of them does. All False otherwise: a mask of one piece, or one that left the region
        altogether (whether that move stands is not decided here).
    """
    none = torch.zeros_like(mask)
    count, labels = cv2.connectedComponents(
        mask.cpu().numpy().astype(np.uint8), connectivity=CONNECTIVITY
    )
    if count <= 2:  # the background and at most one part
        return none
    labels_t = torch.from_numpy(labels).to(mask.device)
    near = grow_region(region, margin)
    touching = torch.unique(labels_t[near & mask])
    if touching.numel() == 0:
        return none
    return mask & ~torch.isin(labels_t, touching)
