"""Candidate selection: choose among the masks a decoding cascade produced, by consistency.

Each step of the cascade yields candidates (the first step's four outputs, each refinement's
three multimask outputs). Instead of always keeping the last step's, :func:`consistency_scores`
rates every candidate with model-agnostic evidence: SAM's own predicted IoU, the agreement with
where the object is expected (its previous mask in a video) and how much more similar to the
target the pixels inside the mask are than those outside. Pure functions on low-resolution
logits (no frame-size map is made).
"""

from __future__ import annotations

import torch
from torch import Tensor


def mask_iou(masks: Tensor, reference: Tensor) -> Tensor:
    """(M, h, w) bool masks against an (h, w) bool reference: (M,) IoU (0 when both empty)."""
    inter = (masks & reference).flatten(1).sum(1)
    union = (masks | reference).flatten(1).sum(1)
    return torch.where(
        union > 0, inter / union.clamp_min(1), torch.zeros_like(inter, dtype=torch.float32)
    )


def similarity_contrast(masks: Tensor, similarity: Tensor) -> Tensor:
    """(M,) mean of an (h, w) similarity map inside each (M, h, w) bool mask minus its mean
    outside (0 where either side is empty)."""
    sim = similarity.to(torch.float32).flatten()
    flat = masks.flatten(1).to(torch.float32)
    inside_n, outside_n = flat.sum(1), (1 - flat).sum(1)
    inside = flat @ sim / inside_n.clamp_min(1)
    outside = (1 - flat) @ sim / outside_n.clamp_min(1)
    both = (inside_n > 0) & (outside_n > 0)
    return torch.where(both, inside - outside, torch.zeros_like(inside))


def consistency_scores(
    logits: Tensor,
    predicted_iou: Tensor,
    similarity: Tensor,
    expected: Tensor | None,
    threshold: float,
    prior_weight: float,
    contrast_weight: float,
) -> Tensor:
    """Consistency score of M candidate masks of one object; empty masks score ``-inf``.

    Args:
        logits: (M, h, w) low-resolution mask logits of the candidates (the image content only).
        predicted_iou: (M,) SAM's predicted IoU of each.
        similarity: (h, w) the target's location confidence at the same resolution.
        expected: (h, w) bool mask of where the object is expected, or None (the agreement term
            is then 0).
        threshold: SAM's mask threshold on the logits.

    Returns:
        (M,) ``predicted_iou + prior_weight * IoU(mask, expected) + contrast_weight *
        (mean similarity inside - outside)``.
    """
    masks = logits > threshold
    score = predicted_iou.to(torch.float32).clone()
    if expected is not None and prior_weight:
        score = score + prior_weight * mask_iou(masks, expected)
    if contrast_weight:
        score = score + contrast_weight * similarity_contrast(masks, similarity)
    empty = ~masks.flatten(1).any(1)
    return torch.where(empty, torch.full_like(score, -torch.inf), score)
