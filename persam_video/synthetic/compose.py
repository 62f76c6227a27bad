"""Object appearances, sprites, poses and layered compositing of one frame.

An object is drawn from a *sprite*: its texture and coverage rendered once at its base radius. A
frame warps each sprite with its pose (translation, scale, rotation) and paints the actors in
z-order, later actors on top. The label map receives an actor's label wherever its warped coverage
is at least ``LABEL_COVERAGE_THRESHOLD``, so it shows exactly the visible part of every object.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from persam_video.labels import BACKGROUND_ID
from persam_video.synthetic.shapes import rasterize_outline
from persam_video.synthetic.textures import RGB_MAX, mix_colors, pattern

TEXTURE_KINDS: tuple[str, ...] = ("solid", "stripes", "dots", "noise", "checker")

LABEL_COVERAGE_THRESHOLD = 0.5
SPRITE_PADDING_PX = 2
SOLID_SHADING = 0.12  # a solid object gets a faint noise shading so that it is not perfectly flat
BLUR_KERNEL = (3, 3)
BYTE_LEVELS = 256
UNIFORM_BYTE_MEAN = (BYTE_LEVELS - 1) / 2.0
UNIFORM_BYTE_STD = BYTE_LEVELS / np.sqrt(12.0)  # std of a uniform integer in [0, 256)
ROUNDING_OFFSET = 0.5  # float -> uint8 conversion truncates


@dataclass(frozen=True)
class Appearance:
    """What an object looks like, independent of where it is.

    Attributes:
      shape (str): shape kind, e.g. ``"star"`` (see ``shapes.SHAPE_KINDS``) or ``"bar"``.
      outline (np.ndarray): (N, 2) float32 polygon in the unit disc.
      texture (str): texture kind (see ``TEXTURE_KINDS``).
      colors (np.ndarray): (2, 3) float32 RGB in 0..255; the primary colour first.
      texture_scale (float): pattern length as a fraction of the object radius.
      texture_seed (int): seed of the texture's own random stream.
    """

    shape: str
    outline: np.ndarray
    texture: str
    colors: np.ndarray
    texture_scale: float
    texture_seed: int


@dataclass(frozen=True)
class Sprite:
    """An appearance rendered at a base radius.

    Attributes:
      rgba (np.ndarray): (S, S, 4) float32; RGB in 0..255 premultiplied by the coverage (alpha),
        coverage in ``[0, 1]``.
      radius (float): object radius in sprite pixels; the object fits in this disc.
    """

    rgba: np.ndarray
    radius: float

    @property
    def center(self) -> float:
        """Sprite coordinate of the object centre (both axes)."""
        return (self.rgba.shape[0] - 1) / 2.0


@dataclass(frozen=True)
class Pose:
    """Where an object is drawn: centre ``(x, y)`` in pixels, scale factor, rotation in degrees."""

    x: float
    y: float
    scale: float = 1.0
    angle: float = 0.0


@dataclass(frozen=True)
class Actor:
    """A sprite in a scene with its label (``BACKGROUND_ID`` for distractors)."""

    sprite: Sprite
    label: int = BACKGROUND_ID
    foreground: bool = False


@dataclass(frozen=True)
class Layers:
    """The result of compositing one frame.

    Attributes:
      image (np.ndarray | None): (H, W, 3) float32 RGB in 0..255 (None for a labels-only pass).
      labels (np.ndarray): (H, W) uint8 visible-instance label map.
      amodal (np.ndarray): (K, H, W) bool full extent of labels 1..K, occluded parts included.
      foreground (np.ndarray): (H, W) bool pixels covered by foreground (occluder) actors.
    """

    image: np.ndarray | None
    labels: np.ndarray
    amodal: np.ndarray
    foreground: np.ndarray


def build_sprite(appearance: Appearance, radius: float) -> Sprite:
    """Render an appearance at ``radius`` pixels.

    Arguments:
      appearance (Appearance): shape, texture and colours.
      radius (float): object radius in pixels, > 0.

    Returns:
      (Sprite): the textured sprite with its coverage.
    """
    size = 2 * (int(np.ceil(radius)) + SPRITE_PADDING_PX) + 1
    size_hw = (size, size)
    center = (size - 1) / 2.0
    coverage = rasterize_outline(appearance.outline * radius + center, size_hw)
    rng = np.random.default_rng(appearance.texture_seed)
    scale = appearance.texture_scale * radius
    if appearance.texture == "solid":
        field = pattern("noise", rng, size_hw, radius) * np.float32(SOLID_SHADING)
    else:
        field = pattern(appearance.texture, rng, size_hw, scale)
    rgb = mix_colors(field, appearance.colors) * cv2.merge([coverage, coverage, coverage])
    return Sprite(rgba=cv2.merge([rgb, coverage]), radius=float(radius))


def _sprite_to_frame(sprite: Sprite, pose: Pose) -> np.ndarray:
    """Affine map from sprite pixel coordinates to frame pixel coordinates, (2, 3) float64."""
    angle = np.deg2rad(pose.angle)
    cos, sin = pose.scale * np.cos(angle), pose.scale * np.sin(angle)
    c = sprite.center
    return np.array(
        [[cos, -sin, pose.x - (cos - sin) * c], [sin, cos, pose.y - (sin + cos) * c]],
        dtype=np.float64,
    )


def place_sprite(
    sprite: Sprite, pose: Pose, size_hw: tuple[int, int]
) -> tuple[int, int, np.ndarray] | None:
    """Warp a sprite into the frame region it covers.

    Arguments:
      sprite (Sprite): the sprite.
      pose (Pose): where to draw it.
      size_hw (tuple[int, int]): frame size (H, W).

    Returns:
      (tuple[int, int, np.ndarray] | None): ``(x0, y0, patch)`` with the patch (h, w, 4) float32
        to paint at column ``x0``, row ``y0``; None when the object lies outside the frame.
    """
    height, width = size_hw
    extent = sprite.radius * pose.scale + SPRITE_PADDING_PX
    x0, y0 = max(int(np.floor(pose.x - extent)), 0), max(int(np.floor(pose.y - extent)), 0)
    x1 = min(int(np.ceil(pose.x + extent)) + 1, width)
    y1 = min(int(np.ceil(pose.y + extent)) + 1, height)
    if x1 <= x0 or y1 <= y0:
        return None
    matrix = _sprite_to_frame(sprite, pose)
    matrix[:, 2] -= (x0, y0)
    patch = cv2.warpAffine(
        sprite.rgba,
        matrix,
        (x1 - x0, y1 - y0),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return x0, y0, patch


def compose(
    size_hw: tuple[int, int],
    actors: list[Actor],
    poses: list[Pose],
    background: np.ndarray | None = None,
    n_labels: int | None = None,
) -> Layers:
    """Paint actors in list order (later ones on top) over a background.

    Arguments:
      size_hw (tuple[int, int]): frame size (H, W).
      actors (list[Actor]): actors in z-order.
      poses (list[Pose]): one pose per actor.
      background (np.ndarray | None): (H, W, 3) float32 RGB; None for a labels-only pass.
      n_labels (int | None): K, the number of amodal masks to return (default: the largest label).

    Returns:
      (Layers): image, visible label map, amodal masks and foreground mask.
    """
    if len(actors) != len(poses):
        raise ValueError(f"{len(actors)} actors but {len(poses)} poses")
    if n_labels is None:
        n_labels = max((actor.label for actor in actors), default=0)
    image = None if background is None else background.astype(np.float32, copy=True)
    labels = np.zeros(size_hw, dtype=np.uint8)
    amodal = np.zeros((n_labels, *size_hw), dtype=bool)
    foreground = np.zeros(size_hw, dtype=bool)
    for actor, pose in zip(actors, poses, strict=True):
        placed = place_sprite(actor.sprite, pose, size_hw)
        if placed is None:
            continue
        x0, y0, patch = placed
        rows, cols = slice(y0, y0 + patch.shape[0]), slice(x0, x0 + patch.shape[1])
        alpha = patch[..., 3]
        if image is not None:
            region = image[rows, cols]
            region -= region * alpha[..., None].repeat(3, axis=2)
            region += patch[..., :3]
        covered = alpha >= LABEL_COVERAGE_THRESHOLD
        labels[rows, cols][covered] = actor.label
        if actor.label != BACKGROUND_ID:
            amodal[actor.label - 1, rows, cols] |= covered
        if actor.foreground:
            foreground[rows, cols] |= covered
    return Layers(image=image, labels=labels, amodal=amodal, foreground=foreground)


def finish_image(
    image: np.ndarray,
    rng: np.random.Generator,
    gain: np.ndarray,
    bias: float,
    noise_sigma: float,
    blur: bool = False,
) -> np.ndarray:
    """Apply global lighting, optional slight blur and sensor noise; round to uint8.

    The noise is zero-mean and uniformly distributed (cheaper to draw than Gaussian noise).

    Arguments:
      image (np.ndarray): (H, W, 3) float32 RGB in 0..255 (modified in place).
      rng (np.random.Generator): source of the noise.
      gain (np.ndarray): (3,) per-channel multiplicative gain (brightness and colour cast).
      bias (float): additive brightness offset in intensity units.
      noise_sigma (float): standard deviation of the noise in intensity units.
      blur (bool): apply a 3x3 Gaussian blur before the noise.

    Returns:
      (np.ndarray): (H, W, 3) uint8 RGB.
    """
    noise_scale = noise_sigma / UNIFORM_BYTE_STD
    offset = bias + ROUNDING_OFFSET - noise_scale * UNIFORM_BYTE_MEAN
    affine = np.concatenate([np.diag(gain), np.full((3, 1), offset)], axis=1)
    image = cv2.transform(image, affine.astype(np.float32))
    if blur:
        image = cv2.GaussianBlur(image, BLUR_KERNEL, 0)
    noise = rng.integers(0, BYTE_LEVELS, image.shape, dtype=np.uint8)
    image = cv2.scaleAdd(noise.astype(np.float32), noise_scale, image)
    return np.clip(image, 0.0, RGB_MAX, out=image).astype(np.uint8)
