"""SAM image features of a frame and the geometry that maps them back to the frame's pixels.

Shapes: a frame is (H, W); SAM resizes its longest side to S (``image_size``) giving (H', W')
and zero-pads it to (S, S); the encoder's embedding grid is (h, w) = (S / 16, S / 16), and the
mask decoder's low-resolution logits are (4h, 4w).
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

#: SAM's mask decoder outputs logits at this multiple of the embedding grid resolution.
LOW_RES_SCALE = 4


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
    #: HQ-SAM only: (1, C / 8, 4h, 4w) the high-resolution features its high-quality token's
    #: mask is read from (the image embedding fused with an early encoder layer's features,
    #: :func:`~persam_video.persam.guided_decoder.hq_features`; the same for every decoder
    #: call on the frame, so computed once); None for other models.
    hq: Tensor | None = None

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


def pad_to_square(x: Tensor, size: int) -> Tensor:
    """Zero-pad (..., h, w) at the bottom and right to (..., size, size), like SAM's preprocess."""
    return F.pad(x, (0, size - x.shape[-1], 0, size - x.shape[-2]))
