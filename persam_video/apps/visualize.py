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
#: Legend (a colour swatch and the id of each object, top left): text height as a share of the
#: short side, at least this many pixels, and the swatch's side in text heights.
LEGEND_TEXT_SHARE = 0.045
LEGEND_MIN_TEXT_PX = 8
LEGEND_BACKGROUND_RGB = (0, 0, 0)
LEGEND_TEXT_RGB = (255, 255, 255)
LEGEND_FONT = cv2.FONT_HERSHEY_SIMPLEX
#: OpenCV's Hershey fonts are about this many pixels tall at scale 1.
HERSHEY_PX_AT_SCALE_1 = 22
#: Background blur of the ``blur`` masked video: Gaussian sigma as a share of the short side.
BLUR_SIGMA_SHARE = 0.02
#: The heat map: the similarity range mapped onto the colour map, its weight over the frame.
HEATMAP_RANGE = (-1.0, 1.0)
HEATMAP_ALPHA = 0.6
HEATMAP_COLORMAP = cv2.COLORMAP_JET

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
    legend: list[int] | None = None,
) -> np.ndarray:
    """Draw a label map over a frame.

    Args:
        frame: (H, W, 3) uint8 RGB.
        labels: (H, W) uint8 label map (0 background).
        points: optional (points (N, 2) float x, y; labels (N,)) pairs of prompt points to draw,
            green for positive, red for negative.
        legend: object ids to list in a legend at the top left (a swatch of each object's
            colour and its id), or None for no legend.

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
    if legend:
        draw_legend(out, legend)
    return out


def draw_legend(image: np.ndarray, obj_ids: list[int]) -> None:
    """Draw, in place at the top left of an (H, W, 3) image, one row per object: a swatch of its
    colour and its id."""
    text_px = max(LEGEND_MIN_TEXT_PX, round(LEGEND_TEXT_SHARE * min(image.shape[:2])))
    scale = text_px / HERSHEY_PX_AT_SCALE_1
    thickness = max(1, text_px // LEGEND_MIN_TEXT_PX)
    pad = max(1, text_px // 4)
    rows = [f"{obj_id}" for obj_id in obj_ids]
    text_w = max(cv2.getTextSize(r, LEGEND_FONT, scale, thickness)[0][0] for r in rows)
    width, height = pad * 3 + text_px + text_w, pad + len(rows) * (text_px + pad)
    cv2.rectangle(image, (0, 0), (width, height), LEGEND_BACKGROUND_RGB, -1)
    for row, (obj_id, text) in enumerate(zip(obj_ids, rows, strict=True)):
        top = pad + row * (text_px + pad)
        cv2.rectangle(
            image, (pad, top), (pad + text_px - 1, top + text_px - 1), object_color(obj_id), -1
        )
        cv2.putText(
            image,
            text,
            (2 * pad + text_px, top + text_px - 1),
            LEGEND_FONT,
            scale,
            LEGEND_TEXT_RGB,
            thickness,
            cv2.LINE_AA,
        )


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


def heatmap(
    frame: np.ndarray, labels: np.ndarray, maps: list[tuple[int, np.ndarray | None]]
) -> np.ndarray:
    """One panel per object, side by side: the frame under a colour map of the object's
    location confidence (cosine similarity, -1 blue .. 1 red, one fixed scale so frames
    compare), with the object's contour.

    Args:
        frame: (H, W, 3) uint8 RGB.
        labels: (H, W) uint8 label map.
        maps: (object id, (H, W) float similarity or None where there is none: drawn flat).

    Returns:
        (H, W * len(maps), 3) uint8 RGB image.
    """
    panels = []
    width = line_width(labels.shape)
    for obj_id, similarity in maps:
        if similarity is None:
            similarity = np.full(labels.shape, HEATMAP_RANGE[0], np.float32)
        low, high = HEATMAP_RANGE
        scaled = np.clip((similarity - low) / (high - low), 0.0, 1.0)
        colours = cv2.applyColorMap((scaled * 255).astype(np.uint8), HEATMAP_COLORMAP)
        colours = cv2.cvtColor(colours, cv2.COLOR_BGR2RGB).astype(np.float32)
        panel = ((1 - HEATMAP_ALPHA) * frame + HEATMAP_ALPHA * colours).round().astype(np.uint8)
        contours, _ = cv2.findContours(
            (labels == obj_id).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        cv2.drawContours(panel, contours, -1, object_color(obj_id), width)
        draw_legend(panel, [obj_id])
        panels.append(panel)
    return np.concatenate(panels, axis=1) if panels else frame.copy()
