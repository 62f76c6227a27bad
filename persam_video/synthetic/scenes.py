"""Single procedural scenes and two-frame training pairs for the demo model.

A scene is a textured background, background distractors, K target objects (labels 1..K, drawn in
label order so a higher label occludes a lower one) and possibly one foreground distractor on top.
Distractors are *not* objects: their pixels are labelled background (0) in the label map, even
where the foreground distractor covers a target. Many distractors copy the colours of a target but
have another shape or texture, so that colour alone never identifies an object.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from persam_video.synthetic.compose import (
    TEXTURE_KINDS,
    Actor,
    Appearance,
    Layers,
    Pose,
    build_sprite,
    compose,
    finish_image,
)
from persam_video.synthetic.shapes import SHAPE_KINDS, bar_outline, sample_outline
from persam_video.synthetic.textures import hsv_to_rgb, make_background

TRAIN_SIZE_HW = (256, 256)
TRAIN_OBJECTS_RANGE = (1, 4)  # inclusive
TRAIN_RADIUS_RANGE = (0.12, 0.30)  # object radius as a fraction of the short side
DISTRACTOR_RADIUS_RANGE = (0.06, 0.18)
BACKGROUND_DISTRACTORS_RANGE = (0, 3)  # inclusive
FOREGROUND_DISTRACTOR_PROB = 0.5
CENTER_RANGE = (0.1, 0.9)  # object centres as a fraction of the frame width / height

# A training scene is accepted when every object shows at least this much.
TRAIN_MIN_AREA_FRACTION = 0.004  # of the frame area
TRAIN_MIN_VISIBLE_RATIO = 0.25  # of the object's own (amodal) area
MAX_PLACEMENT_TRIES = 20
FALLBACK_FILL = 0.95  # object radius / half cell size in the fallback grid layout
OFF_FRAME = -1.0e6

# Object appearance.
OBJECT_SATURATION_RANGE = (0.5, 1.0)
OBJECT_VALUE_RANGE = (0.45, 1.0)
HUE_JITTER = 0.25  # fraction of the hue spacing 1 / K between targets
SECONDARY_HUE_SHIFT = 0.04
SECONDARY_SATURATION_FACTOR = (0.4, 1.0)
SECONDARY_VALUE_SHIFT = (0.3, 0.5)
MIN_VALUE = 0.1
TEXTURE_SCALE_RANGE = (0.25, 0.6)  # pattern length as a fraction of the object radius
SAME_COLOR_DISTRACTOR_PROB = 0.7
BAR_HALF_WIDTH_RANGE = (0.04, 0.08)  # fraction of the bar's half length
SEED_BOUND = 1 << 62

# Changes between the two frames of a training pair.
PAIR_SHIFT_SIGMA = 0.08  # fraction of the short side
PAIR_MAX_SHIFT = 0.2
PAIR_SCALE_RANGE = (0.8, 1.25)
PAIR_MAX_ROTATION_DEG = 25.0

# Lighting and sensor noise of a still frame.
GAIN_RANGE = (0.8, 1.2)
BIAS_RANGE = (-12.0, 12.0)
TINT_RANGE = 0.05  # per-channel relative colour cast
NOISE_SIGMA_RANGE = (0.0, 4.0)


@dataclass(frozen=True)
class Scene:
    """One rendered scene.

    Attributes:
      image (np.ndarray): (H, W, 3) uint8 RGB.
      labels (np.ndarray): (H, W) uint8; 0 background and distractors, 1..K the visible part of
        each object.
      amodal (np.ndarray): (K, H, W) bool; ``amodal[k - 1]`` is the full drawn region of object k,
        occluded parts included.
      foreground (np.ndarray): (H, W) bool; pixels covered by the foreground distractor (if any).
    """

    image: np.ndarray
    labels: np.ndarray
    amodal: np.ndarray
    foreground: np.ndarray

    @property
    def object_ids(self) -> tuple[int, ...]:
        """Object labels ``1..K``."""
        return tuple(range(1, self.amodal.shape[0] + 1))


def _new_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(SEED_BOUND))


def integer_in(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    """A uniform integer in the inclusive range ``bounds``."""
    return int(rng.integers(bounds[0], bounds[1] + 1))


def object_colors(rng: np.random.Generator, hue: float) -> np.ndarray:
    """A saturated primary colour of ``hue`` and a darker or lighter secondary of similar hue.

    Returns:
      (np.ndarray): (2, 3) float32 RGB in 0..255.
    """
    saturation = rng.uniform(*OBJECT_SATURATION_RANGE)
    value = rng.uniform(*OBJECT_VALUE_RANGE)
    shift = rng.uniform(*SECONDARY_VALUE_SHIFT)
    second_value = value - shift if value - shift >= MIN_VALUE else min(value + shift, 1.0)
    second = hsv_to_rgb(
        hue + rng.uniform(-SECONDARY_HUE_SHIFT, SECONDARY_HUE_SHIFT),
        saturation * rng.uniform(*SECONDARY_SATURATION_FACTOR),
        second_value,
    )
    return np.stack([hsv_to_rgb(hue, saturation, value), second])


def sample_appearance(
    rng: np.random.Generator,
    colors: np.ndarray,
    shape: str | None = None,
    texture: str | None = None,
) -> Appearance:
    """An appearance with the given colours and a random (or given) shape and texture."""
    shape = shape or SHAPE_KINDS[rng.integers(len(SHAPE_KINDS))]
    texture = texture or TEXTURE_KINDS[rng.integers(len(TEXTURE_KINDS))]
    return Appearance(
        shape=shape,
        outline=sample_outline(rng, shape),
        texture=texture,
        colors=colors,
        texture_scale=rng.uniform(*TEXTURE_SCALE_RANGE),
        texture_seed=_new_seed(rng),
    )


def sample_target_appearances(rng: np.random.Generator, n: int) -> list[Appearance]:
    """Appearances of ``n`` targets with hues spread evenly (>= 180/n degrees apart)."""
    spacing = 1.0 / n
    hues = rng.random() + spacing * (np.arange(n) + rng.uniform(-HUE_JITTER, HUE_JITTER, n))
    return [sample_appearance(rng, object_colors(rng, hue)) for hue in hues]


def _other_kind(rng: np.random.Generator, kinds: tuple[str, ...], excluded: str) -> str:
    others = [kind for kind in kinds if kind != excluded]
    return others[rng.integers(len(others))]


def sample_distractor_appearance(rng: np.random.Generator, targets: list[Appearance]) -> Appearance:
    """A distractor: usually a target's colours with another shape and/or texture, else random."""
    if not targets or rng.random() >= SAME_COLOR_DISTRACTOR_PROB:
        return sample_appearance(rng, object_colors(rng, rng.random()))
    target = targets[rng.integers(len(targets))]
    appearance = sample_appearance(rng, target.colors)
    if appearance.shape == target.shape and appearance.texture == target.texture:
        texture = _other_kind(rng, TEXTURE_KINDS, target.texture)
        appearance = sample_appearance(rng, target.colors, appearance.shape, texture)
    return appearance


def sample_bar_appearance(rng: np.random.Generator, targets: list[Appearance]) -> Appearance:
    """A long thin bar (a pole in front of the scene) with distractor colours and texture."""
    base = sample_distractor_appearance(rng, targets)
    half_width = rng.uniform(*BAR_HALF_WIDTH_RANGE)
    return Appearance(
        shape="bar",
        outline=bar_outline(half_width),
        texture=base.texture,
        colors=base.colors,
        texture_scale=base.texture_scale * half_width * 2.0,
        texture_seed=base.texture_seed,
    )


def visible_enough(layers: Layers, min_area: float, min_ratio: float) -> bool:
    """Whether every object 1..K shows ``>= min_area`` pixels and ``>= min_ratio`` of itself."""
    n_labels = layers.amodal.shape[0]
    visible = np.bincount(layers.labels.ravel(), minlength=n_labels + 1)[1 : n_labels + 1]
    full = layers.amodal.reshape(n_labels, -1).sum(axis=1)
    return bool(np.all(visible >= min_area) and np.all(visible >= min_ratio * full))


def random_lighting(rng: np.random.Generator) -> tuple[np.ndarray, float, float]:
    """Random still-frame lighting: ``(gain (3,) float32, bias, noise_sigma)``."""
    gain = rng.uniform(*GAIN_RANGE) * (1.0 + rng.uniform(-TINT_RANGE, TINT_RANGE, 3))
    return gain.astype(np.float32), rng.uniform(*BIAS_RANGE), rng.uniform(*NOISE_SIGMA_RANGE)


def _random_pose(rng: np.random.Generator, size_hw: tuple[int, int]) -> Pose:
    height, width = size_hw
    return Pose(
        x=rng.uniform(*CENTER_RANGE) * width,
        y=rng.uniform(*CENTER_RANGE) * height,
        angle=rng.uniform(0.0, 360.0),
    )


def _grid_poses(actors: list[Actor], size_hw: tuple[int, int]) -> list[Pose]:
    """Fallback layout: objects shrunk into separate grid cells, distractors off the frame."""
    targets = [actor for actor in actors if actor.label]
    cols = int(np.ceil(np.sqrt(len(targets))))
    rows = int(np.ceil(len(targets) / cols))
    cell_h, cell_w = size_hw[0] / rows, size_hw[1] / cols
    poses = []
    for actor in actors:
        if not actor.label:
            poses.append(Pose(OFF_FRAME, OFF_FRAME))
            continue
        row, col = divmod(actor.label - 1, cols)
        scale = min(1.0, FALLBACK_FILL * min(cell_h, cell_w) / (2.0 * actor.sprite.radius))
        poses.append(Pose((col + 0.5) * cell_w, (row + 0.5) * cell_h, scale))
    return poses


def _scene_actors(
    rng: np.random.Generator,
    size_hw: tuple[int, int],
    n_objects: int,
    radius_range: tuple[float, float],
) -> list[Actor]:
    """Background distractors, targets 1..K and maybe a foreground distractor, in z-order."""
    short = min(size_hw)
    targets = sample_target_appearances(rng, n_objects)
    n_background = integer_in(rng, BACKGROUND_DISTRACTORS_RANGE)
    n_foreground = int(rng.random() < FOREGROUND_DISTRACTOR_PROB)
    actors = []
    for index in range(n_background + n_objects + n_foreground):
        is_target = n_background <= index < n_background + n_objects
        if is_target:
            appearance = targets[index - n_background]
            radius = rng.uniform(*radius_range) * short
        else:
            appearance = sample_distractor_appearance(rng, targets)
            radius = rng.uniform(*DISTRACTOR_RADIUS_RANGE) * short
        label = index - n_background + 1 if is_target else 0
        foreground = index >= n_background + n_objects
        actors.append(Actor(build_sprite(appearance, radius), label, foreground))
    return actors


def _place(
    rng: np.random.Generator,
    size_hw: tuple[int, int],
    actors: list[Actor],
    propose: Callable[[np.random.Generator], list[Pose]],
    fallback: list[Pose],
) -> list[Pose]:
    """Draw poses with ``propose(rng)`` until every object is visible enough, else ``fallback``."""
    n_labels = max(actor.label for actor in actors)
    min_area = TRAIN_MIN_AREA_FRACTION * size_hw[0] * size_hw[1]
    for _ in range(MAX_PLACEMENT_TRIES):
        poses = propose(rng)
        layers = compose(size_hw, actors, poses, n_labels=n_labels)
        if visible_enough(layers, min_area, TRAIN_MIN_VISIBLE_RATIO):
            return poses
    return fallback


def _perturb_pose(rng: np.random.Generator, pose: Pose, short: float) -> Pose:
    """Move, rescale and rotate a pose as between two frames of a moving scene."""
    shift = np.clip(rng.normal(0.0, PAIR_SHIFT_SIGMA, 2), -PAIR_MAX_SHIFT, PAIR_MAX_SHIFT) * short
    return Pose(
        x=pose.x + shift[0],
        y=pose.y + shift[1],
        scale=pose.scale * np.exp(rng.uniform(*np.log(PAIR_SCALE_RANGE))),
        angle=pose.angle + rng.uniform(-PAIR_MAX_ROTATION_DEG, PAIR_MAX_ROTATION_DEG),
    )


def _render(
    rng: np.random.Generator,
    background: np.ndarray,
    actors: list[Actor],
    poses: list[Pose],
    n_objects: int,
) -> Scene:
    layers = compose(background.shape[:2], actors, poses, background, n_labels=n_objects)
    image = finish_image(layers.image, rng, *random_lighting(rng))
    return Scene(image, layers.labels, layers.amodal, layers.foreground)


def _setup(
    rng: np.random.Generator,
    size_hw: tuple[int, int],
    n_objects: int,
    radius_range: tuple[float, float],
) -> tuple[np.ndarray, list[Actor], list[Pose]]:
    """Background, actors and validated first poses of a scene."""
    if n_objects < 1 or n_objects > np.iinfo(np.uint8).max:
        raise ValueError(f"n_objects must lie in [1, 255], got {n_objects}")
    size_hw = (int(size_hw[0]), int(size_hw[1]))
    background = make_background(rng, size_hw)
    actors = _scene_actors(rng, size_hw, n_objects, radius_range)
    poses = _place(
        rng,
        size_hw,
        actors,
        lambda r: [_random_pose(r, size_hw) for _ in actors],
        _grid_poses(actors, size_hw),
    )
    return background, actors, poses


def make_scene(
    rng: np.random.Generator,
    size_hw: tuple[int, int] = TRAIN_SIZE_HW,
    n_objects: int = 1,
    radius_range: tuple[float, float] = TRAIN_RADIUS_RANGE,
) -> Scene:
    """Render one random scene.

    Every object shows at least ``TRAIN_MIN_AREA_FRACTION`` of the frame and at least
    ``TRAIN_MIN_VISIBLE_RATIO`` of its own area.

    Arguments:
      rng (np.random.Generator): the only random source.
      size_hw (tuple[int, int]): image size (H, W).
      n_objects (int): K, number of labelled objects (1..255).
      radius_range (tuple[float, float]): object radius range as fractions of the short side.

    Returns:
      (Scene): image (H, W, 3) uint8, labels (H, W) uint8 in 0..K, amodal masks, foreground mask.
    """
    background, actors, poses = _setup(rng, size_hw, n_objects, radius_range)
    return _render(rng, background, actors, poses, n_objects)


def _training_object_count(rng: np.random.Generator) -> int:
    return integer_in(rng, TRAIN_OBJECTS_RANGE)


def make_training_sample(
    rng: np.random.Generator, size_hw: tuple[int, int] = TRAIN_SIZE_HW
) -> tuple[np.ndarray, np.ndarray]:
    """One training scene with 1-4 large objects (radius 12-30% of the short side).

    Returns:
      (tuple[np.ndarray, np.ndarray]): image (H, W, 3) uint8 RGB and labels (H, W) uint8 with
        every id ``1..labels.max()`` present.
    """
    scene = make_scene(rng, size_hw, _training_object_count(rng))
    return scene.image, scene.labels


def make_training_pair(
    rng: np.random.Generator, size_hw: tuple[int, int] = TRAIN_SIZE_HW
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two frames of one scene: objects and distractors moved, rescaled and rotated, and the
    lighting and noise changed. Ids are consistent and every object is visible in both frames.

    Returns:
      (tuple): ``(image_a, labels_a, image_b, labels_b)``; images (H, W, 3) uint8 RGB, labels
        (H, W) uint8 with the same ids ``1..K`` present in both.
    """
    n_objects = _training_object_count(rng)
    background, actors, poses_a = _setup(rng, size_hw, n_objects, TRAIN_RADIUS_RANGE)
    short = min(size_hw)
    poses_b = _place(
        rng,
        background.shape[:2],
        actors,
        lambda r: [_perturb_pose(r, pose, short) for pose in poses_a],
        poses_a,
    )
    scene_a = _render(rng, background, actors, poses_a, n_objects)
    scene_b = _render(rng, background, actors, poses_b, n_objects)
    return scene_a.image, scene_a.labels, scene_b.image, scene_b.labels
