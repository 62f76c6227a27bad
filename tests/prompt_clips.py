"""A generated clip for the prompting tests: object 1 is there from the start, object 2 enters
from the left edge at frame ``ENTER`` (about a third of it inside) and is wholly inside from
frame ``FULLY_IN``."""

from __future__ import annotations

import numpy as np

from persam_video.synthetic.compose import Actor, Pose, build_sprite, compose
from persam_video.synthetic.scenes import object_colors, sample_appearance
from persam_video.synthetic.textures import make_background

SIZE_HW = (160, 224)
ENTER = 10
FULLY_IN = 16
#: Object radii in pixels, object 2's centre on frame ENTER (x) and its speed (pixels/frame).
RADII = (26.0, 30.0)
ENTER_X = -12.0
SPEED = 7.0


def _poses(index: int, n_frames: int) -> list[Pose]:
    height, width = SIZE_HW
    first = Pose(x=width * 0.7 - index * 1.5, y=height * 0.35 + index * 0.5)
    # Object 2 is wholly outside the frame before ENTER.
    x = ENTER_X + (index - ENTER) * SPEED if index >= ENTER else -4 * RADII[1]
    second = Pose(x=x, y=height * 0.68, angle=2.0 * index)
    return [first, second]


def entering_clip(n_frames: int = 30, seed: int = 3) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n_frames`` frames (H, W, 3) uint8 and their label maps (H, W) uint8 (ids 1, 2)."""
    rng = np.random.default_rng(seed)
    background = make_background(rng, SIZE_HW)
    hues = (0.05, 0.55)
    actors = [
        Actor(build_sprite(sample_appearance(rng, object_colors(rng, hue)), radius), label=i + 1)
        for i, (hue, radius) in enumerate(zip(hues, RADII, strict=True))
    ]
    frames, labels = [], []
    for index in range(n_frames):
        layers = compose(SIZE_HW, actors, _poses(index, n_frames), background, n_labels=2)
        frames.append(np.clip(layers.image + 0.5, 0, 255).astype(np.uint8))
        labels.append(layers.labels)
    return frames, labels
