"""Object outlines as closed polygons in unit coordinates, and their rasterization.

Every outline is an ``(N, 2)`` float32 array of ``(x, y)`` vertices normalized so that its farthest
vertex lies on the unit circle: an object drawn with radius ``r`` pixels fits in a disc of radius
``r`` around its centre, whatever its rotation.
"""

from __future__ import annotations

import cv2
import numpy as np

SHAPE_KINDS: tuple[str, ...] = ("ellipse", "rectangle", "polygon", "star", "blob")

OUTLINE_POINTS = 96
CORNER_POINTS = 8
ELLIPSE_ASPECT_RANGE = (0.45, 1.0)
RECTANGLE_ANGLE_RANGE_DEG = (25.0, 65.0)  # angle of the half-diagonal: sets the aspect ratio
RECTANGLE_CORNER_RANGE = (0.0, 0.6)  # corner radius as a fraction of the shorter half side
POLYGON_SIDES_RANGE = (3, 8)
POLYGON_RADIUS_JITTER = 0.12
STAR_POINTS_RANGE = (4, 7)
STAR_INNER_RANGE = (0.45, 0.65)
BLOB_HARMONICS = 4
BLOB_AMPLITUDE = 0.22

SUBPIXEL_BITS = 4  # cv2.fillPoly fixed-point precision
MAX_ALPHA = 255.0


def _normalize_outline(points: np.ndarray) -> np.ndarray:
    """Centre nothing, just scale (N, 2) points so the farthest lies on the unit circle."""
    return (points / np.linalg.norm(points, axis=1).max()).astype(np.float32)


def _circle_points(n: int, phase: float = 0.0) -> np.ndarray:
    """Angles of ``n`` evenly spaced points starting at ``phase``, (n,) float64."""
    return phase + np.arange(n) * (2.0 * np.pi / n)


def ellipse_outline(aspect: float) -> np.ndarray:
    """An ellipse with semi-axes 1 and ``aspect``, (OUTLINE_POINTS, 2) float32."""
    angles = _circle_points(OUTLINE_POINTS)
    return _normalize_outline(np.stack([np.cos(angles), aspect * np.sin(angles)], axis=1))


def rounded_rectangle_outline(half_w: float, half_h: float, corner: float) -> np.ndarray:
    """A rectangle with circular corners of radius ``corner`` (same units as the half sides)."""
    corner = min(corner, half_w, half_h)
    centres = [
        (half_w - corner, half_h - corner),
        (corner - half_w, half_h - corner),
        (corner - half_w, corner - half_h),
        (half_w - corner, corner - half_h),
    ]
    arcs = []
    for quadrant, (cx, cy) in enumerate(centres):
        angles = np.linspace(0.0, np.pi / 2, CORNER_POINTS) + quadrant * np.pi / 2
        arcs.append(np.stack([cx + corner * np.cos(angles), cy + corner * np.sin(angles)], axis=1))
    return _normalize_outline(np.concatenate(arcs))


def polygon_outline(radii: np.ndarray, phase: float) -> np.ndarray:
    """A polygon with one vertex per entry of ``radii`` (n,), at evenly spaced angles."""
    angles = _circle_points(len(radii), phase)
    return _normalize_outline(np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1))


def star_outline(n_points: int, inner: float) -> np.ndarray:
    """A star with ``n_points`` tips and inner radius ``inner`` (tips at radius 1)."""
    radii = np.tile([1.0, inner], n_points)
    return polygon_outline(radii, phase=0.0)


def blob_outline(coefficients: np.ndarray, phases: np.ndarray) -> np.ndarray:
    """A smooth star-convex blob: ``r(t) = 1 + sum_k c_k cos(k t + p_k)``, k = 2..K+1."""
    angles = _circle_points(OUTLINE_POINTS)
    harmonics = np.arange(2, len(coefficients) + 2)[:, None]
    radii = 1.0 + (coefficients[:, None] * np.cos(harmonics * angles + phases[:, None])).sum(0)
    return polygon_outline(radii, phase=0.0)


def bar_outline(half_width: float) -> np.ndarray:
    """A long thin rectangle along x (half length 1, half width ``half_width``), e.g. a pole."""
    return rounded_rectangle_outline(1.0, half_width, 0.0)


def sample_outline(rng: np.random.Generator, kind: str) -> np.ndarray:
    """Draw a random outline of ``kind`` (see ``SHAPE_KINDS``), (N, 2) float32 in the unit disc."""
    if kind == "ellipse":
        return ellipse_outline(rng.uniform(*ELLIPSE_ASPECT_RANGE))
    if kind == "rectangle":
        angle = np.deg2rad(rng.uniform(*RECTANGLE_ANGLE_RANGE_DEG))
        half_w, half_h = np.cos(angle), np.sin(angle)
        corner = rng.uniform(*RECTANGLE_CORNER_RANGE) * min(half_w, half_h)
        return rounded_rectangle_outline(half_w, half_h, corner)
    if kind == "polygon":
        n_sides = int(rng.integers(POLYGON_SIDES_RANGE[0], POLYGON_SIDES_RANGE[1] + 1))
        radii = 1.0 + rng.uniform(-POLYGON_RADIUS_JITTER, POLYGON_RADIUS_JITTER, n_sides)
        return polygon_outline(radii, rng.uniform(0, 2 * np.pi))
    if kind == "star":
        n_points = int(rng.integers(STAR_POINTS_RANGE[0], STAR_POINTS_RANGE[1] + 1))
        return star_outline(n_points, rng.uniform(*STAR_INNER_RANGE))
    if kind == "blob":
        coefficients = rng.uniform(0.0, BLOB_AMPLITUDE, BLOB_HARMONICS) / np.arange(1, 5) ** 0.5
        return blob_outline(coefficients, rng.uniform(0, 2 * np.pi, BLOB_HARMONICS))
    raise ValueError(f"unknown shape {kind!r}; expected one of {SHAPE_KINDS}")


def rasterize_outline(points_xy: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Fill a polygon given in pixel coordinates, with anti-aliased edges.

    Arguments:
      points_xy (np.ndarray): (N, 2) vertices ``(x, y)`` in pixels (pixel centres at integers).
      size_hw (tuple[int, int]): output size (H, W).

    Returns:
      (np.ndarray): (H, W) float32 coverage in ``[0, 1]``.
    """
    canvas = np.zeros(size_hw, dtype=np.uint8)
    fixed = np.round(points_xy * (1 << SUBPIXEL_BITS)).astype(np.int32)
    cv2.fillPoly(canvas, [fixed], 255, lineType=cv2.LINE_AA, shift=SUBPIXEL_BITS)
    return canvas.astype(np.float32) * np.float32(1.0 / MAX_ALPHA)
