"""Procedural pattern fields, colours and textured backgrounds (numpy + OpenCV only).

A *pattern field* is an ``(H, W)`` float32 array in ``[0, 1]``; it is turned into colour by mixing
two RGB colours: ``rgb = c0 * (1 - f) + c1 * f``. The same pattern functions texture both the
backgrounds and the object sprites.
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

PATTERN_KINDS: tuple[str, ...] = ("noise", "stripes", "checker", "dots", "gradient")
BACKGROUND_KINDS: tuple[str, ...] = (*PATTERN_KINDS, "mixture")

NOISE_OCTAVES = 3
NOISE_PERSISTENCE = 0.5
MIN_NOISE_CELL_PX = 2.0
STRIPE_SHARPNESS_RANGE = (1.0, 4.0)
CHECKER_SHARPNESS = 6.0
DOT_RADIUS_RANGE = (0.2, 0.38)  # fraction of the dot period

# Backgrounds: muted colours and a characteristic pattern length relative to the short side.
BACKGROUND_SATURATION_RANGE = (0.0, 0.45)
BACKGROUND_VALUE_RANGE = (0.2, 0.9)
BACKGROUND_MIN_VALUE_GAP = 0.12
BACKGROUND_HUE_SPREAD = 0.3  # hue difference of the two colours, up to this (1 = full circle)
BACKGROUND_SCALE_RANGE = (0.05, 0.35)
BACKGROUND_GRAIN_CELL_PX = 3.0
BACKGROUND_GRAIN_AMPLITUDE = 10.0  # in 0..255 intensity units
MIXTURE_MASK_SCALE = 0.4

RGB_MAX = 255.0


def hsv_to_rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    """One HSV colour (all in ``[0, 1]``, hue wraps) as RGB, (3,) float32 in 0..255."""
    rgb = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return np.asarray(rgb, dtype=np.float32) * np.float32(RGB_MAX)


def rotated_coordinates(size_hw: tuple[int, int], angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates rotated by ``angle`` radians.

    Returns:
      (np.ndarray, np.ndarray): ``u`` and ``v``, each (H, W) float32, where ``u`` runs along the
        direction ``angle`` and ``v`` across it.
    """
    height, width = size_hw
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    return xs * cos + ys * sin, ys * cos - xs * sin


def _normalize(field: np.ndarray) -> np.ndarray:
    """Rescale a float32 array linearly to ``[0, 1]`` (constant arrays become zeros)."""
    low, high = float(field.min()), float(field.max())
    if high - low < 1e-6:
        return np.zeros_like(field)
    return (field - low) * np.float32(1.0 / (high - low))


def value_noise(rng: np.random.Generator, size_hw: tuple[int, int], cell: float) -> np.ndarray:
    """Smooth fractal value noise: bicubically upsampled random grids, summed over octaves.

    Arguments:
      rng (np.random.Generator): random source.
      size_hw (tuple[int, int]): output size (H, W).
      cell (float): grid spacing of the coarsest octave in pixels.

    Returns:
      (np.ndarray): (H, W) float32 in ``[0, 1]``.
    """
    height, width = size_hw
    field = np.zeros((height, width), dtype=np.float32)
    amplitude = 1.0
    for _ in range(NOISE_OCTAVES):
        cell = max(cell, MIN_NOISE_CELL_PX)
        grid_hw = (int(np.ceil(height / cell)) + 1, int(np.ceil(width / cell)) + 1)
        grid = rng.random(grid_hw, dtype=np.float32)
        field += np.float32(amplitude) * cv2.resize(
            grid, (width, height), interpolation=cv2.INTER_CUBIC
        )
        amplitude *= NOISE_PERSISTENCE
        cell /= 2.0
    return _normalize(field)


def stripes(rng: np.random.Generator, size_hw: tuple[int, int], period: float) -> np.ndarray:
    """Parallel stripes at a random angle and phase, from soft sinusoids to hard bands.

    Returns:
      (np.ndarray): (H, W) float32 in ``[0, 1]``.
    """
    u, _ = rotated_coordinates(size_hw, rng.uniform(0.0, np.pi))
    wave = np.sin(u * np.float32(2.0 * np.pi / period) + np.float32(rng.uniform(0, 2 * np.pi)))
    sharpness = np.float32(rng.uniform(*STRIPE_SHARPNESS_RANGE))
    return np.clip(wave * sharpness * np.float32(0.5) + np.float32(0.5), 0.0, 1.0)


def checker(rng: np.random.Generator, size_hw: tuple[int, int], cell: float) -> np.ndarray:
    """An anti-aliased checkerboard of square ``cell`` at a random angle.

    Returns:
      (np.ndarray): (H, W) float32 in ``[0, 1]``.
    """
    u, v = rotated_coordinates(size_hw, rng.uniform(0.0, np.pi / 2))
    freq = np.float32(np.pi / cell)
    product = np.sin(u * freq) * np.sin(v * freq)
    return np.clip(product * np.float32(CHECKER_SHARPNESS) * 0.5 + 0.5, 0.0, 1.0)


def dots(rng: np.random.Generator, size_hw: tuple[int, int], period: float) -> np.ndarray:
    """A rotated square lattice of anti-aliased discs (1 inside a dot, 0 between dots).

    Returns:
      (np.ndarray): (H, W) float32 in ``[0, 1]``.
    """
    u, v = rotated_coordinates(size_hw, rng.uniform(0.0, np.pi / 2))
    half = np.float32(period / 2.0)
    du = np.mod(u + np.float32(rng.uniform(0, period)), np.float32(period)) - half
    dv = np.mod(v + np.float32(rng.uniform(0, period)), np.float32(period)) - half
    radius = np.float32(rng.uniform(*DOT_RADIUS_RANGE) * period)
    return np.clip(radius - np.sqrt(du * du + dv * dv) + np.float32(0.5), 0.0, 1.0)


def gradient(rng: np.random.Generator, size_hw: tuple[int, int], _scale: float = 0.0) -> np.ndarray:
    """A linear ramp from 0 to 1 across the image in a random direction.

    Returns:
      (np.ndarray): (H, W) float32 in ``[0, 1]``.
    """
    u, _ = rotated_coordinates(size_hw, rng.uniform(0.0, 2 * np.pi))
    return _normalize(u)


_PATTERNS = {
    "noise": value_noise,
    "stripes": stripes,
    "checker": checker,
    "dots": dots,
    "gradient": gradient,
}


def pattern(
    kind: str, rng: np.random.Generator, size_hw: tuple[int, int], scale: float
) -> np.ndarray:
    """Draw a pattern field of ``kind`` (see ``PATTERN_KINDS``).

    Arguments:
      kind (str): pattern name.
      rng (np.random.Generator): random source for angle, phase and noise.
      size_hw (tuple[int, int]): output size (H, W).
      scale (float): characteristic length in pixels (stripe period, checker cell, dot period,
        coarsest noise cell; ignored by ``"gradient"``).

    Returns:
      (np.ndarray): (H, W) float32 in ``[0, 1]``.
    """
    if kind not in _PATTERNS:
        raise ValueError(f"unknown pattern {kind!r}; expected one of {PATTERN_KINDS}")
    return _PATTERNS[kind](rng, size_hw, scale)


def mix_colors(field: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """Colour a pattern field.

    Arguments:
      field (np.ndarray): (H, W) float32 in ``[0, 1]``.
      colors (np.ndarray): (2, 3) float32 RGB colours for field values 0 and 1.

    Returns:
      (np.ndarray): (H, W, 3) float32 RGB in 0..255.
    """
    affine = np.stack([colors[1] - colors[0], colors[0]], axis=1).astype(np.float32)
    return cv2.transform(np.ascontiguousarray(field, dtype=np.float32)[..., None], affine)


def _muted_color_pair(rng: np.random.Generator) -> np.ndarray:
    """Two low-saturation colours whose values differ by at least ``BACKGROUND_MIN_VALUE_GAP``."""
    values = np.sort(rng.uniform(*BACKGROUND_VALUE_RANGE, size=2))
    values[1] = min(max(values[1], values[0] + BACKGROUND_MIN_VALUE_GAP), 1.0)
    hue = rng.random()
    hues = (hue, hue + rng.uniform(-BACKGROUND_HUE_SPREAD, BACKGROUND_HUE_SPREAD))
    return np.stack(
        [
            hsv_to_rgb(h, rng.uniform(*BACKGROUND_SATURATION_RANGE), v)
            for h, v in zip(hues, values, strict=True)
        ]
    )


def _plain_background(rng: np.random.Generator, size_hw: tuple[int, int], kind: str) -> np.ndarray:
    """One patterned background layer, (H, W, 3) float32 RGB in 0..255."""
    scale = rng.uniform(*BACKGROUND_SCALE_RANGE) * min(size_hw)
    return mix_colors(pattern(kind, rng, size_hw, scale), _muted_color_pair(rng))


def make_background(
    rng: np.random.Generator,
    size_hw: tuple[int, int],
    kinds: tuple[str, ...] = BACKGROUND_KINDS,
) -> np.ndarray:
    """A textured background: value noise, stripes, checker, dots, a gradient or a mixture of two.

    Every background gets a fine grain so that no region is perfectly flat.

    Arguments:
      rng (np.random.Generator): random source.
      size_hw (tuple[int, int]): output size (H, W).
      kinds (tuple[str, ...]): the kinds to draw from (default: all of ``BACKGROUND_KINDS``, with
        the same draws as before this argument existed).

    Returns:
      (np.ndarray): (H, W, 3) float32 RGB in 0..255.
    """
    unknown = set(kinds) - set(BACKGROUND_KINDS)
    if not kinds or unknown:
        raise ValueError(f"background kinds must be among {BACKGROUND_KINDS}, got {kinds}")
    kind = kinds[rng.integers(len(kinds))]
    if kind == "mixture":
        first, second = rng.choice(len(PATTERN_KINDS), size=2, replace=False)
        image = _plain_background(rng, size_hw, PATTERN_KINDS[first])
        other = _plain_background(rng, size_hw, PATTERN_KINDS[second])
        mask = value_noise(rng, size_hw, MIXTURE_MASK_SCALE * min(size_hw))
        image = cv2.blendLinear(image, other, np.float32(1.0) - mask, mask)
    else:
        image = _plain_background(rng, size_hw, kind)
    grain = value_noise(rng, size_hw, BACKGROUND_GRAIN_CELL_PX) - np.float32(0.5)
    grain *= np.float32(2.0 * BACKGROUND_GRAIN_AMPLITUDE)
    image += cv2.merge([grain, grain, grain])
    return np.clip(image, 0.0, RGB_MAX, out=image)
