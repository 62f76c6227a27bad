"""Regions of low-resolution masks grown by a margin (a pure function).

:func:`grow_region` makes the region that distractor-aware negatives avoid
(:func:`~persam_video.persam.prior.grid_region`) and the neighbourhood within which the video
layer's detached parts count as near the expected region
(:func:`persam_video.video.guards.detached_components`).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def grow_region(region: Tensor, margin: int) -> Tensor:
    """(h, w) bool region grown by ``margin`` cells on every side (a square neighbourhood)."""
    if margin <= 0:
        return region
    grown = F.max_pool2d(region[None, None].float(), 2 * margin + 1, stride=1, padding=margin)
    return grown[0, 0] > 0
