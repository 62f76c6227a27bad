"""The tracker's rules, as pure functions: box prompts, fusion, absence (with hysteresis),
momentum."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from persam_video.config import PresenceConfig, TrackConfig
from persam_video.persam.cascade import Prediction
from persam_video.persam.rules import is_found


def expand_box(
    box: tuple[float, float, float, float], margin: float, size: tuple[int, int]
) -> tuple[float, float, float, float]:
    """Grow a box by ``margin`` pixels on every side, clipped to [0, W] x [0, H] (official rule)."""
    height, width = size
    x0, y0, x1, y1 = box
    return (
        max(x0 - margin, 0.0),
        max(y0 - margin, 0.0),
        min(x1 + margin, width),
        min(y1 + margin, height),
    )


def box_center(box: tuple[float, float, float, float]) -> tuple[float, float]:
    """Integer centre (x, y) of a box, rounded down as the official code does."""
    return (float(math.floor((box[0] + box[2]) / 2)), float(math.floor((box[1] + box[3]) / 2)))


def fuse(logits: Tensor, obj_ids: list[int], threshold: float = 0.0) -> Tensor:
    """Fuse (K, H, W) mask logits into an (H, W) uint8 label map.

    Each pixel goes to the object with the highest logit when that logit is above ``threshold``
    (SAM's mask threshold), else to the background; objects never overlap.
    """
    height, width = logits.shape[-2:]
    if logits.shape[0] == 0:
        return torch.zeros((height, width), dtype=torch.uint8, device=logits.device)
    best, index = logits.max(dim=0)
    ids = torch.tensor(obj_ids, dtype=torch.uint8, device=logits.device)
    return torch.where(best > threshold, ids[index], torch.zeros_like(ids[index]))


def is_absent(
    pred: Prediction, track: TrackConfig, presence: PresenceConfig, *, search: bool = False
) -> bool:
    """Whether an object counts as not found on this frame.

    Without occlusion handling (``track.occlusion``), only an empty mask means absent, unless
    ``search`` (looking for a saved target) asks for the ``presence`` thresholds anyway.
    """
    if not bool(pred.mask.any()):
        return True
    if not (track.occlusion or search):
        return False
    return not is_found(pred, presence)


def at_border(
    box: tuple[float, float, float, float] | None, size: tuple[int, int], margin: float
) -> bool:
    """Whether an inclusive pixel box ``(x0, y0, x1, y1)`` lies within ``margin`` pixels of an
    edge of an (H, W) frame (False for no box)."""
    if box is None:
        return False
    height, width = size
    x0, y0, x1, y1 = box
    return min(x0, y0, width - 1 - x1, height - 1 - y1) <= margin


def should_update(score: float, area: int, reference_area: int | None, cfg: TrackConfig) -> bool:
    """Whether a prediction is trustworthy enough to update the target embedding."""
    if not cfg.update or area == 0 or not reference_area:
        return False
    change = max(area / reference_area, reference_area / area)
    return score >= cfg.update_min_score and change <= cfg.update_max_area_change


def momentum_update(
    previous: Tensor, observed: Tensor, first: Tensor, momentum: float, anchor: float
) -> Tensor:
    """e_t = anchor * e_0 + (1 - anchor) * (momentum * e_{t-1} + (1 - momentum) * observed)."""
    blended = momentum * previous + (1.0 - momentum) * observed
    return anchor * first + (1.0 - anchor) * blended


@dataclass(frozen=True)
class Hysteresis:
    """An object's absence state: lost or tracked, with the current run of frames against it."""

    #: Lost: its mask is empty and it is searched for over the whole frame.
    lost: bool = False
    #: While tracked: consecutive frames on which it was not found.
    bad: int = 0
    #: While lost: consecutive frames on which it was found.
    good: int = 0
    #: Whether it was ever tracked: a saved target not seen yet (False) is taken on the first
    #: frame it is found, whatever ``reacquire_after``.
    acquired: bool = True


def hysteresis_step(
    state: Hysteresis, found: bool, lost_after: int, reacquire_after: int
) -> Hysteresis:
    """The next absence state: a tracked object is lost on its ``lost_after``-th consecutive
    frame not found; a lost one is tracked again on its ``reacquire_after``-th consecutive
    frame found (a target never acquired: on the first)."""
    if state.lost and not state.acquired:
        return Hysteresis() if found else state
    if not state.lost:
        bad = 0 if found else state.bad + 1
        return Hysteresis(lost=True) if bad >= lost_after else Hysteresis(bad=bad)
    good = state.good + 1 if found else 0
    return Hysteresis() if good >= reacquire_after else Hysteresis(lost=True, good=good)
