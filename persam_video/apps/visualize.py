"""Drawing results: overlays (colour, contour, prompt points) and masked frames.

Object ``i`` is drawn in colour ``i`` of the DAVIS palette, the same colour its pixels have in
the mask PNGs.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from persam_video.io import DAVIS_PALETTE

#: Opacity of the colour laid over each object.
OVERLAY_ALPHA = 0.5
#: Contour and point sizes scale with the frame: this many pixels of short side per pixel.
PIXELS_PER_LINE_WIDTH = 240
POINT_RADIUS_LINES = 3
POSITIVE_POINT_RGB = (0, 255, 0)
NEGATIVE_POINT_RGB = (255, 0, 0)
POINT_OUTLINE_RGB = (255, 255, 255)
#: Background blur of the ``blur`` masked video: Gaussian sigma as a share of the short side.
BLUR_SIGMA_SHARE = 0.02

MaskedMode = Literal["cutout", "blur", "alpha"]
MASKED_MODES: tuple[str, ...] = ("cutout", "blur", "alpha")


def object_color(obj_id: int) -> tuple[int, int, int]:
    """RGB colour of an object id (its DAVIS palette entry)."""
    r, g, b = DAVIS_PALETTE[obj_id]
    return (int(r), int(g), int(b))


def line_width(size: tuple[int, int]) -> int:
    """Contour width in pixels for a frame of (H, W)."""
    return max(1, round(min(size) / PIXELS_PER_LINE_WIDTH))


def overlay(
    frame: np.ndarray,
    labels: np.ndarray,
    points: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> np.ndarray:
    """Draw a label map over a frame.

    Args:
        frame: (H, W, 3) uint8 RGB.
        labels: (H, W) uint8 label map (0 background).
        points: optional (points (N, 2) float x, y; labels (N,)) pairs of prompt points to draw,
            green for positive, red for negative.

    Returns:
        (H, W, 3) uint8 RGB image (a new array).
    """
    palette = DAVIS_PALETTE.astype(np.float32)
    out = frame.astype(np.float32)
    inside = labels > 0
    out[inside] = (1 - OVERLAY_ALPHA) * out[inside] + OVERLAY_ALPHA * palette[labels[inside]]
    out = out.round().astype(np.uint8)
    width = line_width(labels.shape)
    for obj_id in np.unique(labels[inside]):
        contours, _ = cv2.findContours(
            (labels == obj_id).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        cv2.drawContours(out, contours, -1, object_color(int(obj_id)), width)
    for xy, point_labels in points or []:
        for (x, y), label in zip(np.round(xy).astype(int), point_labels, strict=True):
            color = POSITIVE_POINT_RGB if label == 1 else NEGATIVE_POINT_RGB
            radius = POINT_RADIUS_LINES * width
            cv2.circle(out, (int(x), int(y)), radius + width, POINT_OUTLINE_RGB, -1)
            cv2.circle(out, (int(x), int(y)), radius, color, -1)
    return out


def masked(frame: np.ndarray, labels: np.ndarray, mode: str) -> np.ndarray:
    """A frame with everything but the objects removed.

    ``cutout``: objects on black, (H, W, 3). ``blur``: objects sharp on a blurred background,
    (H, W, 3). ``alpha``: (H, W, 4) RGBA with the objects opaque and the rest transparent.
    """
    inside = labels > 0
    if mode == "cutout":
        return np.where(inside[..., None], frame, 0).astype(np.uint8)
    if mode == "blur":
        sigma = max(1.0, BLUR_SIGMA_SHARE * min(labels.shape))
        blurred = cv2.GaussianBlur(frame, (0, 0), sigmaX=sigma)
        return np.where(inside[..., None], frame, blurred).astype(np.uint8)
    if mode == "alpha":
        alpha = np.where(inside, 255, 0).astype(np.uint8)
        return np.dstack([frame, alpha])
    raise ValueError(f"unknown masked-video mode {mode!r}; use one of {', '.join(MASKED_MODES)}")
