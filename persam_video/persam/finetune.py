"""PerSAM-F: scale-aware fine-tuning of two mask weights on the reference (SAM stays frozen).

SAM's three multimask outputs cover an object at different scales (part, object, whole). PerSAM-F
learns weights (1 - w1 - w2, w1, w2) that mix them, by fitting the mixture of the first decoding
step's outputs to the reference mask with dice + focal loss, as in the official code. The
decoder's outputs do not depend on the weights, so they are computed once and training touches
only the two scalars. The official code takes the loss at the photo's full resolution, which
costs every step a pass over every pixel (a minute for a 1282x1282 photo on a small CPU);
``finetune.loss_side`` takes it on the logits and mask resized to at most that many pixels a
side (the paper presets keep the full resolution).

With several reference shots the loss is summed over them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from torch import Tensor

from persam_video.config import PerSAMConfig
from persam_video.model.spec import NUM_MULTIMASK_OUTPUTS
from persam_video.persam.cascade import first_step_prompts, multimask_outputs
from persam_video.persam.features import FrameFeatures
from persam_video.progress import progress_bar

#: The official initialization: every output weighted 1/3.
INITIAL_WEIGHT = 1.0 / NUM_MULTIMASK_OUTPUTS
#: Weights learned: one per multimask output but the first, which takes what the others leave.
FREE_WEIGHTS = NUM_MULTIMASK_OUTPUTS - 1
#: AdamW epsilon of the official code.
ADAM_EPS = 1e-4
FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0
#: Smoothing term of the dice loss.
DICE_SMOOTH = 1.0


@dataclass
class FinetuneResult:
    """Learned weights and how the training went."""

    #: (3,) weights of the three multimask outputs (they sum to 1).
    weights: Tensor
    steps: int
    seconds: float
    initial_loss: float
    final_loss: float

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else float("inf")

    def info(self) -> dict[str, Any]:
        """How the training went, as plain numbers (for target files and results.json)."""
        return {
            "weights": [round(float(w), 6) for w in self.weights.tolist()],
            "steps": self.steps,
            "seconds": round(self.seconds, 3),
            "steps_per_second": round(self.steps_per_second, 1),
            "initial_loss": round(self.initial_loss, 6),
            "final_loss": round(self.final_loss, 6),
        }


def dice_loss(logits: Tensor, gt: Tensor) -> Tensor:
    """1 - smoothed dice of sigmoid(logits) and {0, 1} ground truth, summed over the batch."""
    prob = logits.sigmoid().flatten(1)
    gt = gt.flatten(1)
    numerator = 2 * (prob * gt).sum(-1)
    denominator = prob.sum(-1) + gt.sum(-1)
    return (1 - (numerator + DICE_SMOOTH) / (denominator + DICE_SMOOTH)).sum()


def focal_loss(logits: Tensor, gt: Tensor) -> Tensor:
    """Sigmoid focal loss (alpha 0.25, gamma 2), mean over pixels, summed over the batch."""
    logits, gt = logits.flatten(1), gt.flatten(1)
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, gt, reduction="none")
    p_t = prob * gt + (1 - prob) * (1 - gt)
    alpha_t = FOCAL_ALPHA * gt + (1 - FOCAL_ALPHA) * (1 - gt)
    return (alpha_t * ce * (1 - p_t) ** FOCAL_GAMMA).mean(1).sum()


def _at_most(full: Tensor, gt: Tensor, side: int) -> tuple[Tensor, Tensor]:
    """(3, H, W) logits and the (H, W) mask resized so that their longer side is at most
    ``side`` (bilinear logits, area-averaged mask: a soft target where the edge cuts a pixel);
    unchanged when already that small."""
    height, width = gt.shape
    if max(height, width) <= side:
        return full, gt
    scale = side / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    small = F.interpolate(full[None], size=size, mode="bilinear", align_corners=False)[0]
    soft = F.interpolate(gt[None, None], size=size, mode="area")[0, 0]
    return small, soft


def mix(free: Tensor) -> Tensor:
    """(3,) weights (1 - w1 - w2, w1, w2) from the two free parameters (2,)."""
    return torch.cat([1 - free.sum(0, keepdim=True), free])


def fit_mask_weights(
    sam: Sam,
    config: PerSAMConfig,
    embedding: Tensor,
    shots: list[tuple[FrameFeatures, Tensor]],
    *,
    progress: bool = False,
) -> FinetuneResult:
    """Learn PerSAM-F's mask weights for one target.

    Args:
        sam: the (frozen) model.
        config: ``config.finetune`` gives steps and learning rate; the first decoding step is
            the one the config uses at inference (so the weights fit what they will mix).
        embedding: (C,) target embedding.
        shots: reference (features, (H, W) bool mask tensor) pairs.
        progress: show a progress bar of the steps (steps/s), on a terminal.
    """
    outputs = []
    with torch.no_grad():
        for feats, _ in shots:
            first = first_step_prompts(sam, feats, embedding[None], config)
            full, _ = multimask_outputs(sam, feats, first)
            outputs.append(full[0].float())  # (3, H, W)
    gt_masks = [mask.to(outputs[0]) for _, mask in shots]
    side = config.finetune.loss_side
    if side:
        pairs = [_at_most(full, gt, side) for full, gt in zip(outputs, gt_masks, strict=True)]
        outputs, gt_masks = [full for full, _ in pairs], [gt for _, gt in pairs]

    free = torch.full((FREE_WEIGHTS,), INITIAL_WEIGHT, device=outputs[0].device, requires_grad=True)
    steps, lr = config.finetune.steps, config.finetune.lr
    optimizer = torch.optim.AdamW([free], lr=lr, eps=ADAM_EPS)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)

    def loss_of(weights: Tensor) -> Tensor:
        total = outputs[0].new_zeros(())
        for full, gt in zip(outputs, gt_masks, strict=True):
            mixed = torch.einsum("m,mhw->hw", weights, full)[None]
            total = total + dice_loss(mixed, gt[None]) + focal_loss(mixed, gt[None])
        return total

    start = time.perf_counter()
    with torch.no_grad():
        initial = float(loss_of(mix(free)))
    for _ in progress_bar(
        range(steps), desc="PerSAM-F", unit="step", enabled=progress, nested=True
    ):
        loss = loss_of(mix(free))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        weights = mix(free).detach()
        final = float(loss_of(weights))
    return FinetuneResult(weights, steps, seconds, initial, final)
