"""Test helpers: synthetic images and masks, and stock encoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from segment_anything.modeling import Sam

from persam_video.persam.encoder import FrameEncoder
from persam_video.persam.features import FrameFeatures

#: The repository's root folder (tests/ is right below it).
REPO_ROOT = Path(__file__).resolve().parents[1]


def encode_image(sam: Sam, rgb: np.ndarray) -> FrameFeatures:
    """SAM features of a frame with segment-anything's own encoder, as ``SamPredictor.set_image``
    computes them."""
    return FrameEncoder(sam, attention="stock").encode(rgb)


def random_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """An (H, W, 3) uint8 image: smooth colour blobs plus noise, so features vary spatially."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.zeros((height, width, 3), np.float32)
    for _ in range(4):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        radius = rng.uniform(0.15, 0.4) * max(height, width)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
        image += blob[..., None] * rng.uniform(0, 255, 3)
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def ellipse_mask(height: int, width: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    """(H, W) bool filled ellipse."""
    yy, xx = np.mgrid[0:height, 0:width]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
