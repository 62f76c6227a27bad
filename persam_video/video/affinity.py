"""The temporal prior without optical flow: a mask carried from one frame to the next by the
affinity of the two frames' SAM features (pure functions).

Each feature cell of the current frame looks at the previous frame's cells within ``radius``
cells, weights them by a softmax of their cosine similarity over ``temperature``, and takes the
weighted average of their low-resolution mask logits, shifted along: a cell whose features moved
by (dy, dx) cells takes the logits from (dy, dx) cells back, at the logits' finer resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def affinity_weights(previous: Tensor, current: Tensor, radius: int, temperature: float) -> Tensor:
    """Softmax weights over the (2r + 1)^2 offsets of a window, per current cell.

    Args:
        previous, current: (C, h, w) features of the previous and the current frame.

    Returns:
        (O, h, w) weights (O = (2 * radius + 1) ** 2 offsets, row-major from (-r, -r)); the
        weight of offset (dy, dx) at cell (y, x) is that of previous cell (y + dy, x + dx),
        0 where that cell is outside the grid.
    """
    prev = F.normalize(previous.to(torch.float32), dim=0)
    cur = F.normalize(current.to(torch.float32), dim=0)
    height, width = cur.shape[-2:]
    padded = F.pad(prev, (radius, radius, radius, radius))
    inside = F.pad(torch.ones_like(prev[:1]), (radius, radius, radius, radius))[0] > 0
    logits = []
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            window = padded[:, dy : dy + height, dx : dx + width]
            sim = (cur * window).sum(0) / temperature
            valid = inside[dy : dy + height, dx : dx + width]
            logits.append(torch.where(valid, sim, torch.full_like(sim, -torch.inf)))
    return torch.stack(logits).softmax(dim=0)


def propagate_logits(
    previous: Tensor, current: Tensor, logits: Tensor, radius: int, temperature: float
) -> Tensor:
    """The previous frame's (1, 4h, 4w) low-resolution logits carried to the current frame by
    feature affinity (:func:`affinity_weights` of the (C, h, w) features): (1, 4h, 4w)."""
    weights = affinity_weights(previous, current, radius, temperature)
    scale = logits.shape[-1] // current.shape[-1]
    fine = weights.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
    pad = radius * scale
    # Outside the grid the weights are 0; replicate padding keeps the products finite.
    padded = F.pad(logits[None], (pad, pad, pad, pad), mode="replicate")[0, 0]
    height, width = logits.shape[-2:]
    out = torch.zeros_like(logits[0])
    side = 2 * radius + 1
    for index in range(side * side):
        dy, dx = divmod(index, side)
        shifted = padded[dy * scale : dy * scale + height, dx * scale : dx * scale + width]
        out = out + fine[index] * shifted
    return out[None]
