"""Connected parts of a mask: which of them lie away from where the object was expected.

A mask that spreads from the object onto a look-alike elsewhere (a copy, a same-coloured
occluder, background clutter) often does so in a separate piece. :func:`detached_components`
finds the pieces that do not come near the region where the object was expected, so that the
decoder's mask can keep only the pieces that continue the object. Pure functions on
low-resolution masks.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

#: Pixel connectivity of a mask's parts (diagonal neighbours are connected).
CONNECTIVITY = 8


def grow_region(region: Tensor, margin: int) -> Tensor:
    """(h, w) bool region grown by ``margin`` cells on every side (a square neighbourhood)."""
    if margin <= 0:
        return region
    grown = F.max_pool2d(region[None, None].float(), 2 * margin + 1, stride=1, padding=margin)
    return grown[0, 0] > 0


def detached_components(mask: Tensor, region: Tensor, margin: int) -> Tensor:
    """The parts of a mask that lie away from the expected region.

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
