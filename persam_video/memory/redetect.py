"""PerSAM's location prior on a memory tracker: find a lost object again.

A memory tracker follows an object from frame to frame; once its object score says the object
is gone, it has nothing to look for it with. PerSAM's target embedding does: the mean of the
tracker's own image features (the lowest-resolution level of its feature pyramid, before any
memory conditioning) inside the object's prompted mask. On a later frame, the cosine similarity
of that embedding to every feature cell locates the object (the location prior), and its peak
and lowest cells become a positive and a negative click.

Whether a candidate is the object is decided against the object's own prompt frame, not
against constants tuned to one model: there the embedding is ``inside`` similar to the object's
cells on average and ``outside`` similar to the rest; a candidate's peak must reach
``outside + accept * (inside - outside)``, and the mask the tracker makes of the candidate must
be as distinct from its surroundings (its cells' mean similarity minus the rest's) as ``accept``
times the prompt frame's contrast (the identity check against look-alikes).

Shapes: features (C, h, w) on the model's square input grid (the frame resized to it, no
padding); masks (H, W) bool at frame size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Reference:
    """An object's target embedding and how it stood out on its prompt frame."""

    #: (C,) unit-norm target embedding.
    embedding: Tensor
    #: Mean cosine similarity of the embedding to the object's cells on its prompt frame.
    inside: float
    #: Mean cosine similarity to the other cells there.
    outside: float

    @property
    def contrast(self) -> float:
        return self.inside - self.outside

    def peak_needed(self, accept: float) -> float:
        """The similarity a candidate's peak must reach."""
        return self.outside + accept * self.contrast


def grid_mask(mask: Tensor, grid: tuple[int, int]) -> Tensor:
    """(H, W) bool mask -> (h, w) bool: cells more than half covered (the most covered cell
    when none is)."""
    cover = F.interpolate(mask[None, None].float(), size=grid, mode="area")[0, 0]
    cells = cover > 0.5
    if not cells.any() and cover.max() > 0:
        cells = cover == cover.max()
    return cells


def similarity(features: Tensor, embedding: Tensor) -> Tensor:
    """(C, h, w) features, (C,) unit embedding -> (h, w) cosine similarity."""
    return torch.einsum("chw,c->hw", F.normalize(features, dim=0), embedding)


def reference(features: Tensor, mask: Tensor) -> Reference | None:
    """The :class:`Reference` of an object with (H, W) ``mask`` on a frame with (C, h, w)
    ``features``; None when the mask covers no cell or every cell."""
    cells = grid_mask(mask, (features.shape[-2], features.shape[-1]))
    if not cells.any() or cells.all():
        return None
    embedding = F.normalize(features[:, cells].mean(dim=1), dim=0)
    sim = similarity(features, embedding)
    return Reference(embedding, float(sim[cells].mean()), float(sim[~cells].mean()))


def contrast_of(features: Tensor, reference: Reference, mask: Tensor) -> float | None:
    """A candidate (H, W) mask's contrast under ``reference`` (its cells' mean similarity minus
    the others'), or None when it covers no cell or every cell."""
    cells = grid_mask(mask, (features.shape[-2], features.shape[-1]))
    if not cells.any() or cells.all():
        return None
    sim = similarity(features, reference.embedding)
    return float(sim[cells].mean() - sim[~cells].mean())


def candidate_clicks(
    features: Tensor, reference: Reference, size: tuple[int, int]
) -> tuple[float, list[tuple[float, float]]]:
    """The similarity peak and the clicks it gives: the peak cell's centre (positive) and the
    lowest cell's centre (negative), in (x, y) frame pixels of a frame of (H, W) ``size``."""
    sim = similarity(features, reference.embedding)
    peak = int(sim.argmax())
    low = int(sim.argmin())
    grid = (sim.shape[0], sim.shape[1])
    return float(sim.flatten()[peak]), [cell_centre(peak, grid, size), cell_centre(low, grid, size)]


def cell_centre(flat: int, grid: tuple[int, int], size: tuple[int, int]) -> tuple[float, float]:
    """(x, y) frame pixels of the centre of cell ``flat`` (row-major) of an (h, w) ``grid``
    laid over a frame of (H, W) ``size``."""
    (h, w), (height, width) = grid, size
    row, col = divmod(flat, w)
    return ((col + 0.5) * width / w, (row + 0.5) * height / h)
