"""Procedural video clips with ground-truth instance labels, for the demo, tests and benchmark.

A clip is a static textured background with, in z-order: static and moving background
distractors, K target objects (labels 1..K, a higher label occludes a lower one) and possibly a
foreground distractor (a sweeping shape or pole) that occludes the targets. Distractors are labelled
background (0). Targets translate smoothly with occasional velocity changes, drift slightly in
scale and rotation, cross and occlude each other; in some clips one target leaves the frame and
comes back, so its id has no pixels at all for a few frames. Appearance is constant apart from
pose and a slowly varying global lighting, plus sensor noise.

Everything is a function of ``(split, seed)`` (see :mod:`persam_video.synthetic.splits`). Clip
properties drawn from the seed (frame count, size, object count, fps) keep their values when
another one is overridden by an argument.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from persam_video.synthetic.compose import Actor, build_sprite, compose, finish_image
from persam_video.synthetic.motion import Motion, random_static, random_sweep, random_walker
from persam_video.synthetic.scenes import (
    DISTRACTOR_RADIUS_RANGE,
    integer_in,
    sample_bar_appearance,
    sample_distractor_appearance,
    sample_target_appearances,
    visible_enough,
)
from persam_video.synthetic.splits import split_seed
from persam_video.synthetic.textures import make_background

# Sizes are neither square nor multiples of 16 (one is portrait) to exercise resizing and padding.
CLIP_SIZES_HW: tuple[tuple[int, int], ...] = (
    (234, 418),
    (270, 358),
    (226, 302),
    (198, 354),
    (286, 382),
    (250, 334),
    (218, 390),
    (262, 466),
    (346, 262),
    (241, 321),
)
CLIP_FRAMES_RANGE = (30, 80)  # inclusive
CLIP_OBJECTS_RANGE = (1, 4)  # inclusive
MAX_CLIP_OBJECTS = 8
CLIP_FPS: tuple[Fraction, ...] = (Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(30))
CLIP_RADIUS_RANGE = (0.15, 0.28)  # object radius as a fraction of the short side
CROWDED_RADIUS_RANGE = (0.12, 0.22)  # ... when there are CROWDED_OBJECTS or more objects
CROWDED_OBJECTS = 3


# The first frame is the user's annotation: every object must be clearly visible in it.
FIRST_FRAME_MIN_AREA_FRACTION = 0.01  # of the frame area
FIRST_FRAME_MIN_VISIBLE_RATIO = 0.6  # of the object's own area
MAX_PLACEMENT_TRIES = 50
FALLBACK_FILL = 0.9  # object radius / half cell size in the fallback grid layout

# Distractors.
BACKGROUND_DISTRACTORS_RANGE = (1, 3)  # inclusive; static
MOVING_DISTRACTOR_PROB = 0.5
MOVING_DISTRACTOR_SPEED = 0.6  # relative to the targets
OCCLUDER_PROB = 0.75
BAR_OCCLUDER_PROB = 0.5
OCCLUDER_RADIUS_RANGE = (0.08, 0.15)
BAR_HALF_LENGTH = 0.75  # fraction of the long side

# Leaving the frame and coming back.
LEAVE_PROB = 0.35
MIN_FRAMES_FOR_LEAVE = 24
LEAVE_START_RANGE = (0.15, 0.4)  # fraction of the clip
HIDDEN_FRAMES_RANGE = (3, 8)  # inclusive; frames spent wholly outside before turning back


# Global lighting varies smoothly; sensor noise is fresh in every frame.
BASE_GAIN_RANGE = (0.9, 1.1)
TINT_RANGE = 0.05
GAIN_AMPLITUDE_MAX = 0.12
BIAS_AMPLITUDE_MAX = 10.0
LIGHT_PERIOD_RANGE = (0.5, 2.0)  # fraction of the clip length
NOISE_SIGMA_RANGE = (1.0, 4.0)
BLUR_PROB = 0.3


@dataclass(frozen=True)
class ClipInfo:
    """What a clip is, known before rendering any frame.

    Attributes:
      name (str): e.g. ``"synth-test-00007"``.
      split (str): ``"train"``, ``"val"`` or ``"test"``.
      seed (int): per-split seed.
      size_hw (tuple[int, int]): frame size (H, W).
      n_frames (int): number of frames.
      fps (Fraction): frame rate.
      object_ids (tuple[int, ...]): target labels ``1..K``.
      leaving_ids (tuple[int, ...]): targets that leave the frame and come back.
      family (str): the clip family (:mod:`persam_video.synthetic.families`); ``""`` for the
        mixed clips of :func:`make_clip`.
      attributes (tuple[str, ...]): DAVIS-style attribute tags of a family clip
        (``families.ATTRIBUTES``); ``()`` for the mixed clips, which are not tagged.
    """

    name: str
    split: str
    seed: int
    size_hw: tuple[int, int]
    n_frames: int
    fps: Fraction
    object_ids: tuple[int, ...]
    leaving_ids: tuple[int, ...]
    family: str = ""
    attributes: tuple[str, ...] = ()


@dataclass
class Clip:
    """A rendered clip.

    Attributes:
      name (str): clip name.
      frames (list[np.ndarray]): T frames, each (H, W, 3) uint8 RGB.
      labels (list[np.ndarray]): T label maps, each (H, W) uint8; 0 background (distractors
        included), k the visible part of object k.
      fps (Fraction): frame rate.
      object_ids (tuple[int, ...]): object labels ``1..K``; all present in the first frame.
      leaving_ids (tuple[int, ...]): objects that leave the frame for a while and come back.
      family (str): the clip family, ``""`` for :func:`make_clip`'s mixed clips.
      attributes (tuple[str, ...]): attribute tags (see :class:`ClipInfo`).
    """

    name: str
    frames: list[np.ndarray]
    labels: list[np.ndarray]
    fps: Fraction
    object_ids: tuple[int, ...]
    leaving_ids: tuple[int, ...] = ()
    family: str = ""
    attributes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def size_hw(self) -> tuple[int, int]:
        """Frame size (H, W)."""
        return self.frames[0].shape[:2]


@dataclass(frozen=True)
class ClipLighting:
    """Smooth global lighting over a clip: gain (3,) and bias as functions of the frame index."""

    gain: np.ndarray
    gain_wave: tuple[float, float, float]  # amplitude, period in frames, phase
    bias_wave: tuple[float, float, float]
    noise_sigma: float
    blur: bool

    def at(self, t: int) -> tuple[np.ndarray, float]:
        """Per-channel gain (3,) float32 and additive bias at frame ``t``."""
        amplitude, period, phase = self.gain_wave
        gain = self.gain * (1.0 + amplitude * np.sin(2 * np.pi * t / period + phase))
        amplitude, period, phase = self.bias_wave
        return gain.astype(np.float32), amplitude * np.sin(2 * np.pi * t / period + phase)


@dataclass(frozen=True)
class _ClipPlan:
    """Everything needed to render a clip; rendering copies the motions so it can run again."""

    info: ClipInfo
    background: np.ndarray
    actors: tuple[Actor, ...]
    motions: tuple[Motion, ...]
    lighting: ClipLighting
    motion_seed: np.random.SeedSequence
    noise_seed: np.random.SeedSequence


def random_clip_lighting(rng: np.random.Generator, n_frames: int) -> ClipLighting:
    """Random smooth lighting over ``n_frames`` frames, with noise level and blur."""

    def wave(max_amplitude: float) -> tuple[float, float, float]:
        period = rng.uniform(*LIGHT_PERIOD_RANGE) * n_frames
        return rng.uniform(0.0, max_amplitude), period, rng.uniform(0.0, 2 * np.pi)

    gain = rng.uniform(*BASE_GAIN_RANGE) * (1.0 + rng.uniform(-TINT_RANGE, TINT_RANGE, 3))
    return ClipLighting(
        gain=gain,
        gain_wave=wave(GAIN_AMPLITUDE_MAX),
        bias_wave=wave(BIAS_AMPLITUDE_MAX),
        noise_sigma=rng.uniform(*NOISE_SIGMA_RANGE),
        blur=bool(rng.random() < BLUR_PROB),
    )


def _clip_radius_range(n_objects: int) -> tuple[float, float]:
    return CROWDED_RADIUS_RANGE if n_objects >= CROWDED_OBJECTS else CLIP_RADIUS_RANGE


def _draw_clip_actors(
    rng: np.random.Generator, size_hw: tuple[int, int], n_objects: int
) -> tuple[list[Actor], list[str]]:
    """Actors in z-order and, per actor, its motion: "static", "walker", "sweep" or "bar"."""
    short = min(size_hw)
    targets = sample_target_appearances(rng, n_objects)
    actors, kinds = [], []
    n_static = integer_in(rng, BACKGROUND_DISTRACTORS_RANGE)
    n_moving = int(rng.random() < MOVING_DISTRACTOR_PROB)
    for index in range(n_static + n_moving):
        radius = rng.uniform(*DISTRACTOR_RADIUS_RANGE) * short
        actors.append(Actor(build_sprite(sample_distractor_appearance(rng, targets), radius)))
        kinds.append("static" if index < n_static else "walker")
    for label, appearance in enumerate(targets, start=1):
        radius = rng.uniform(*_clip_radius_range(n_objects)) * short
        actors.append(Actor(build_sprite(appearance, radius), label))
        kinds.append("walker")
    if rng.random() < OCCLUDER_PROB:
        if rng.random() < BAR_OCCLUDER_PROB:
            appearance = sample_bar_appearance(rng, targets)
            radius = BAR_HALF_LENGTH * max(size_hw)
            kinds.append("bar")
        else:
            appearance = sample_distractor_appearance(rng, targets)
            radius = rng.uniform(*OCCLUDER_RADIUS_RANGE) * short
            kinds.append("sweep")
        actors.append(Actor(build_sprite(appearance, radius), foreground=True))
    return actors, kinds


def _draw_motions(
    rng: np.random.Generator,
    actors: list[Actor],
    kinds: list[str],
    size_hw: tuple[int, int],
    n_frames: int,
) -> list[Motion]:
    motions: list[Motion] = []
    for actor, kind in zip(actors, kinds, strict=True):
        radius = actor.sprite.radius
        if kind == "static":
            motions.append(random_static(rng, size_hw, n_frames))
        elif kind == "walker":
            speed = 1.0 if actor.label else MOVING_DISTRACTOR_SPEED
            motions.append(random_walker(rng, radius, size_hw, n_frames, speed))
        else:
            motions.append(random_sweep(rng, size_hw, n_frames, kind == "bar"))
    return motions


def _first_frame_ok(
    actors: list[Actor], motions: list[Motion], size_hw: tuple[int, int], n_objects: int
) -> bool:
    layers = compose(size_hw, actors, [motion.pose() for motion in motions], n_labels=n_objects)
    min_area = FIRST_FRAME_MIN_AREA_FRACTION * size_hw[0] * size_hw[1]
    return visible_enough(layers, min_area, FIRST_FRAME_MIN_VISIBLE_RATIO)


def _grid_fallback(
    actors: list[Actor], motions: list[Motion], size_hw: tuple[int, int]
) -> list[Motion]:
    """Targets in separate grid cells (shrunk if needed); occluders start outside the frame."""
    n_objects = max(actor.label for actor in actors)
    cols = int(np.ceil(np.sqrt(n_objects)))
    rows = int(np.ceil(n_objects / cols))
    cell_h, cell_w = size_hw[0] / rows, size_hw[1] / cols
    result = []
    for actor, motion in zip(actors, motions, strict=True):
        motion = copy.deepcopy(motion)
        if actor.label:
            row, col = divmod(actor.label - 1, cols)
            motion.x, motion.y = (col + 0.5) * cell_w, (row + 0.5) * cell_h
            fit = FALLBACK_FILL * min(cell_h, cell_w) / (2.0 * actor.sprite.radius)
            motion.log_scale = float(np.log(min(1.0, fit)))
        elif actor.foreground:
            motion.start = (-actor.sprite.radius * 2.0, -actor.sprite.radius * 2.0)
        result.append(motion)
    return result


def _plan_clip(
    seed: int,
    split: str,
    n_frames: int | None,
    size_hw: tuple[int, int] | None,
    n_objects: int | None,
) -> _ClipPlan:
    config_seed, scene_seed, motion_seed, noise_seed = np.random.SeedSequence(
        split_seed(split, seed)
    ).spawn(4)
    config = np.random.default_rng(config_seed)
    drawn_frames = integer_in(config, CLIP_FRAMES_RANGE)
    drawn_size = CLIP_SIZES_HW[config.integers(len(CLIP_SIZES_HW))]
    drawn_objects = integer_in(config, CLIP_OBJECTS_RANGE)
    fps = CLIP_FPS[config.integers(len(CLIP_FPS))]
    leaves = bool(config.random() < LEAVE_PROB)

    n_frames = drawn_frames if n_frames is None else int(n_frames)
    size_hw = drawn_size if size_hw is None else (int(size_hw[0]), int(size_hw[1]))
    n_objects = drawn_objects if n_objects is None else int(n_objects)
    if n_frames < 1:
        raise ValueError(f"n_frames must be positive, got {n_frames}")
    if not 1 <= n_objects <= MAX_CLIP_OBJECTS:
        raise ValueError(f"n_objects must lie in [1, {MAX_CLIP_OBJECTS}], got {n_objects}")

    rng = np.random.default_rng(scene_seed)
    background = make_background(rng, size_hw)
    actors, kinds = _draw_clip_actors(rng, size_hw, n_objects)
    for _ in range(MAX_PLACEMENT_TRIES):
        motions = _draw_motions(rng, actors, kinds, size_hw, n_frames)
        if _first_frame_ok(actors, motions, size_hw, n_objects):
            break
    else:
        motions = _grid_fallback(actors, motions, size_hw)

    leaving_ids: tuple[int, ...] = ()
    if leaves and n_frames >= MIN_FRAMES_FOR_LEAVE:
        leaving_ids = (int(rng.integers(n_objects)) + 1,)
        walker = motions[[actor.label for actor in actors].index(leaving_ids[0])]
        walker.leave_at = max(1, int(rng.uniform(*LEAVE_START_RANGE) * n_frames))
        walker.hidden_frames = integer_in(rng, HIDDEN_FRAMES_RANGE)

    info = ClipInfo(
        name=f"synth-{split}-{seed:05d}",
        split=split,
        seed=int(seed),
        size_hw=size_hw,
        n_frames=n_frames,
        fps=fps,
        object_ids=tuple(range(1, n_objects + 1)),
        leaving_ids=leaving_ids,
    )
    return _ClipPlan(
        info=info,
        background=background,
        actors=tuple(actors),
        motions=tuple(motions),
        lighting=random_clip_lighting(rng, n_frames),
        motion_seed=motion_seed,
        noise_seed=noise_seed,
    )


def _render_clip(plan: _ClipPlan) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Render a plan frame by frame."""
    motions = copy.deepcopy(plan.motions)
    motion_rng = np.random.default_rng(plan.motion_seed)
    noise_rng = np.random.default_rng(plan.noise_seed)
    n_objects = len(plan.info.object_ids)
    lighting = plan.lighting
    for t in range(plan.info.n_frames):
        if t:
            for motion in motions:
                motion.step(t, motion_rng)
        poses = [motion.pose() for motion in motions]
        layers = compose(plan.info.size_hw, list(plan.actors), poses, plan.background, n_objects)
        gain, bias = lighting.at(t)
        frame = finish_image(
            layers.image, noise_rng, gain, bias, lighting.noise_sigma, lighting.blur
        )
        yield frame, layers.labels


def clip_info(
    seed: int,
    *,
    split: str = "test",
    n_frames: int | None = None,
    size_hw: tuple[int, int] | None = None,
    n_objects: int | None = None,
) -> ClipInfo:
    """Describe the clip that :func:`make_clip` would render with the same arguments."""
    return _plan_clip(seed, split, n_frames, size_hw, n_objects).info


def iter_clip(
    seed: int,
    *,
    split: str = "test",
    n_frames: int | None = None,
    size_hw: tuple[int, int] | None = None,
    n_objects: int | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Render a clip lazily, one ``(frame, labels)`` pair at a time (memory stays flat).

    Arguments are checked, and the scene is built, when this is called; frames are rendered as
    they are consumed. See :func:`make_clip` for the arguments.

    Returns:
      (Iterator[tuple[np.ndarray, np.ndarray]]): frames (H, W, 3) uint8 RGB with their label maps
        (H, W) uint8.
    """
    return _render_clip(_plan_clip(seed, split, n_frames, size_hw, n_objects))


def make_clip(
    seed: int,
    *,
    split: str = "test",
    n_frames: int | None = None,
    size_hw: tuple[int, int] | None = None,
    n_objects: int | None = None,
) -> Clip:
    """Render a whole procedural clip.

    Arguments:
      seed (int): per-split seed in ``[0, SPLIT_SEED_RANGE)``.
      split (str): ``"train"``, ``"val"`` or ``"test"``; splits never share a clip.
      n_frames (int | None): frame count (default: drawn from the seed, 30-80).
      size_hw (tuple[int, int] | None): frame size (H, W) (default: drawn from ``CLIP_SIZES_HW``).
      n_objects (int | None): number of target objects (default: drawn from the seed, 1-4).

    Returns:
      (Clip): frames, label maps and metadata. Every object covers at least
        ``FIRST_FRAME_MIN_AREA_FRACTION`` of the first frame.
    """
    plan = _plan_clip(seed, split, n_frames, size_hw, n_objects)
    frames, labels = [], []
    for frame, label_map in _render_clip(plan):
        frames.append(frame)
        labels.append(label_map)
    info = plan.info
    return Clip(info.name, frames, labels, info.fps, info.object_ids, info.leaving_ids)
