"""Clip families, each made for one DAVIS-style attribute, for benchmarks that report per attribute.

DAVIS tags every sequence with attributes (occlusion, out of view, fast motion, ...) so that a
method's weak spots show; :func:`make_clip`'s mixed clips have a bit of everything and no tags.
A family clip is built around one challenge and carries its tags (``ClipInfo.attributes``, and
``db_info.yml`` in a DAVIS export, see :mod:`persam_video.synthetic.export`):

============================  ===================================================================
family / attribute            what happens (DAVIS's own code, where one matches)
============================  ===================================================================
``occlusion``                 two targets on straight paths cross (the higher label passes in
                              front) and both pass behind an upright pole (OCC)
``out-of-view``               a target leaves the frame wholly for at least 3 frames and comes
                              back (OV)
``distractors``               unannotated copies of a target, the very same sprite, walk among
                              the targets (labelled background)
``appearance-change``         the targets' colours drift in hue, their texture turns into
                              another, and the lighting darkens or brightens strongly (AC)
``scale-change``              a target approaches or recedes: its radius grows or shrinks by a
                              factor of 1.6-2.2, its area by 2.5-4.8 (SV)
``fast-motion``               a target orbits the frame at 0.09-0.14 short sides per frame, 2-3
                              times the fastest motion of the mixed clips (FM)
``camera-motion``             the camera pans 0.25-0.45 short sides over the clip and zooms in or
                              out by 1.1-1.3x; the targets are followed, the background and the
                              clutter on it move (DAVIS's CS is camera *shake*; this is smooth)
``scene-cut``                 at 35-55% of the clip the video cuts to another shot for 3-6 frames
                              (another background and lighting, no target, perhaps an
                              unannotated object, sometimes in a target's colours) and back; the
                              targets have moved meanwhile, at least 0.3 short sides each
============================  ===================================================================

The ground truth is exact: each label map is the visible part of every target (an occluded
target is partly or wholly absent; out of view, or while the video shows another shot, its id
has no pixel), drawn by the same compositing as the image
(:func:`persam_video.synthetic.compose.compose`).

Seeds. A family clip is a function of ``(family, split, seed)``: its random streams come from
``SeedSequence([split_seed(split, seed), FAMILY_STREAMS[family]])``, which no other generator
uses, so a family clip never repeats a :func:`make_clip` clip or another family's clip of the
same seed. Training draws only from the ``"train"`` split (``split_rng("train", ...)``) and
validation from ``"val"``; benchmarks use ``"test"`` seeds from ``BENCHMARK_FIRST_SEED`` (1000)
up, while the demo command and the tests use small ``"test"`` seeds of :func:`make_clip`.
"""

from __future__ import annotations

import colorsys
import copy
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from persam_video.synthetic.clips import (
    CLIP_FPS,
    CLIP_RADIUS_RANGE,
    CLIP_SIZES_HW,
    CROWDED_RADIUS_RANGE,
    FIRST_FRAME_MIN_AREA_FRACTION,
    FIRST_FRAME_MIN_VISIBLE_RATIO,
    Clip,
    ClipInfo,
    ClipLighting,
    random_clip_lighting,
)
from persam_video.synthetic.compose import (
    TEXTURE_KINDS,
    Actor,
    Appearance,
    Layers,
    Pose,
    Sprite,
    build_sprite,
    compose,
    finish_image,
)
from persam_video.synthetic.motion import (
    Motion,
    Orbit,
    Ramp,
    Sweep,
    Walker,
    random_static,
    random_walker,
)
from persam_video.synthetic.scenes import (
    DISTRACTOR_RADIUS_RANGE,
    integer_in,
    sample_bar_appearance,
    sample_distractor_appearance,
    sample_target_appearances,
    visible_enough,
)
from persam_video.synthetic.splits import split_seed
from persam_video.synthetic.textures import BACKGROUND_KINDS, RGB_MAX, make_background

OCCLUSION = "occlusion"
OUT_OF_VIEW = "out-of-view"
DISTRACTORS = "distractors"
APPEARANCE_CHANGE = "appearance-change"
SCALE_CHANGE = "scale-change"
FAST_MOTION = "fast-motion"
CAMERA_MOTION = "camera-motion"
SCENE_CUT = "scene-cut"
#: Attribute tags, in report order.
ATTRIBUTES: tuple[str, ...] = (
    OCCLUSION,
    OUT_OF_VIEW,
    DISTRACTORS,
    APPEARANCE_CHANGE,
    SCALE_CHANGE,
    FAST_MOTION,
    CAMERA_MOTION,
    SCENE_CUT,
)
#: Family name -> the attributes its clips carry.
FAMILIES: dict[str, tuple[str, ...]] = {name: (name,) for name in ATTRIBUTES}
#: Family name -> the second entropy word of its seeds. Never renumber: the clips would change.
FAMILY_STREAMS: dict[str, int] = {
    OCCLUSION: 1,
    OUT_OF_VIEW: 2,
    DISTRACTORS: 3,
    APPEARANCE_CHANGE: 4,
    SCALE_CHANGE: 5,
    FAST_MOTION: 6,
    CAMERA_MOTION: 7,
    SCENE_CUT: 8,
}

FAMILY_FRAMES = 24  # default clip length
FAMILY_MIN_FRAMES = 16
MAX_PLAN_TRIES = 50
SHRINK_PER_TRY = 0.97  # targets shrink a little on every failed first-frame check
EDGE_PAD_PX = 2.0  # keep fully visible objects this far inside the frame
CLUTTER_RANGE = (1, 2)  # inclusive; static background distractors (another look)
TARGETS_RANGE = (1, 2)  # inclusive; targets of the families that are not about two objects
MAX_SPIN_DEG = 2.0  # per frame, objects on planned paths

# Occlusion: two targets cross on straight paths; an upright pole stands in front.
OCCLUSION_RADIUS_RANGE = (0.12, 0.2)  # fraction of the short side
OCCLUSION_ROW_RANGE = (0.35, 0.65)  # the crossing row, fraction of the height
OCCLUSION_ROW_OFFSET = 0.5  # rows of the two paths differ by at most this many radii
OCCLUSION_START_RANGE = (0.12, 0.25)  # where paths start and end, fraction of the width
OCCLUSION_DRIFT = 0.1  # the path's end row differs by up to this fraction of the height
POLE_RANGE = (0.3, 0.42)  # pole position, fraction of the width from either side
POLE_DRIFT = 0.06  # the pole moves up to this fraction of the width over the clip

# Out of view: one target leaves through the nearest edge and comes back (motion.Walker).
LEAVE_START_RANGE = (0.15, 0.35)  # fraction of the clip
HIDDEN_FRAMES_RANGE = (3, 5)  # inclusive

# Distractors: copies of a target's sprite, labelled background.
COPIES_RANGE = (1, 2)  # inclusive, per clip
COPY_ON_TOP_PROB = 0.5  # a copy passes in front of the targets (else behind)

# Appearance change.
HUE_SHIFT_RANGE = (0.08, 0.16)  # of the hue circle, either direction
DARKEN_RANGE = (0.55, 0.75)  # the lighting ends at this gain ...
BRIGHTEN_RANGE = (1.2, 1.35)  # ... or this one
DRIFT_TINT = 0.1  # per-channel difference of the final gain, relative

# Scale change.
SCALE_FACTOR_RANGE = (1.6, 2.2)  # radius ratio between the first and the last frame
SCALE_MAX_RADIUS_RANGE = (0.2, 0.3)  # the larger radius, fraction of the short side
#: The scaled target's area changes by at least this factor (SCALE_FACTOR_RANGE[0] squared, with
#: room for rasterization).
SCALE_MIN_AREA_FACTOR = 2.0

# Fast motion.
FAST_RADIUS_RANGE = (0.1, 0.16)
FAST_STEP_RANGE = (0.09, 0.14)  # centre displacement per frame, fraction of the short side
#: The fast target's centre moves at least this fraction of the short side every frame.
FAST_MIN_STEP = FAST_STEP_RANGE[0]
ORBIT_FILL_RANGE = (0.6, 0.95)  # semi-axes, fraction of the room the frame leaves

# Camera motion.
CAMERA_PAN_RANGE = (0.25, 0.45)  # fraction of the short side, over the clip
CAMERA_ZOOM_RANGE = (1.1, 1.3)
CAMERA_CLUTTER_RANGE = (3, 5)  # inclusive; static objects on the (larger) world canvas
CAMERA_TARGET_SPEED = 0.5  # the followed targets move slower in the frame than in other clips
#: Backgrounds with texture everywhere (a plain gradient hides a pan).
CAMERA_BACKGROUNDS: tuple[str, ...] = tuple(k for k in BACKGROUND_KINDS if k != "gradient")

# Scene cut: another shot for a few frames, then the scene again with the targets moved.
CUT_START_RANGE = (0.35, 0.55)  # the first frame of the other shot, fraction of the clip
CUT_FRAMES_RANGE = (3, 6)  # inclusive; frames of the other shot
CUT_OBJECTS_RANGE = (0, 2)  # inclusive; unannotated objects in the other shot
CUT_LOOK_ALIKE_PROB = 0.5  # such an object is drawn like clutter (usually a target's colours)
CUT_DARKEN_RANGE = (0.6, 0.8)  # the other shot's lighting: this gain on the clip's ...
CUT_BRIGHTEN_RANGE = (1.2, 1.4)  # ... or this one
CUT_TINT = 0.15  # per-channel difference of that gain, relative
#: Back from the other shot, every target is at least this far (fraction of the short side) from
#: where the cut left it, when its room in the frame allows (else as far as its candidates go).
CUT_MIN_JUMP = 0.3
CUT_JUMP_CANDIDATES = 16  # places drawn for a target's return; the first far enough is taken


@dataclass(frozen=True)
class Track:
    """One actor of a family clip: its sprite, how it moves, and how its look changes.

    Attributes:
      actor (Actor): sprite, label (0 for a distractor) and foreground flag.
      motion (Motion): its motion (the plan is copied before rendering, so it renders again).
      end_sprite (Sprite | None): the look at the last frame, for an appearance change: same
        radius and outline, so the same coverage; the colours blend linearly over the clip.
      world (bool): fixed to the scene (moves with the camera); False for a target the camera
        follows, which keeps its frame position and only takes the zoom.
    """

    actor: Actor
    motion: Motion
    end_sprite: Sprite | None = None
    world: bool = True


@dataclass(frozen=True)
class Camera:
    """A view of the world canvas: the frame centre looks at a world point, magnified by zoom.

    The point moves linearly from ``start`` to ``end`` and the zoom geometrically from
    ``zoom_start`` to ``zoom_end`` over ``n_frames`` frames. Zoom 1 is one world pixel per frame
    pixel.
    """

    start: tuple[float, float]
    end: tuple[float, float]
    zoom_start: float
    zoom_end: float
    n_frames: int

    def at(self, t: int) -> tuple[float, float, float]:
        """``(x, y, zoom)``: the world point at the frame centre and the zoom at frame ``t``."""
        fraction = t / max(self.n_frames - 1, 1)
        x = self.start[0] + fraction * (self.end[0] - self.start[0])
        y = self.start[1] + fraction * (self.end[1] - self.start[1])
        return x, y, self.zoom_start * (self.zoom_end / self.zoom_start) ** fraction

    def matrix(self, t: int, size_hw: tuple[int, int]) -> np.ndarray:
        """The (2, 3) affine map from world to frame pixel coordinates at frame ``t``."""
        x, y, zoom = self.at(t)
        height, width = size_hw
        return np.array(
            [[zoom, 0.0, width / 2.0 - zoom * x], [0.0, zoom, height / 2.0 - zoom * y]],
            dtype=np.float64,
        )

    def view(self, pose: Pose, t: int, size_hw: tuple[int, int], world: bool) -> Pose:
        """Where a pose is drawn in frame ``t``: a world pose is mapped, a followed one zoomed."""
        x, y, zoom = self.at(t)
        if not world:
            return replace(pose, scale=pose.scale * zoom / self.zoom_start)
        height, width = size_hw
        return Pose(
            zoom * (pose.x - x) + width / 2.0,
            zoom * (pose.y - y) + height / 2.0,
            pose.scale * zoom,
            pose.angle,
        )


@dataclass(frozen=True)
class CutAway:
    """Another shot that the video cuts to for ``frames`` frames from frame ``start`` on.

    Attributes:
      start (int): the first frame of the other shot (the scene's own frames are the others).
      frames (int): its length; the scene is back at frame ``start + frames``.
      background (np.ndarray): (h, w, 3) float32 background of the other shot.
      tracks (tuple[Track, ...]): its actors in z-order, all unannotated (label 0).
      gain (np.ndarray): (3,) factor on the clip's lighting gain while it shows.
    """

    start: int
    frames: int
    background: np.ndarray
    tracks: tuple[Track, ...]
    gain: np.ndarray

    def shows(self, t: int) -> bool:
        """Whether frame ``t`` shows the other shot."""
        return self.start <= t < self.start + self.frames


@dataclass
class CutWalker:
    """A target's random walk (motion.Walker) that moves elsewhere while the video shows another
    shot: from the cut's first frame on it heads in a straight line for a place at least
    ``CUT_MIN_JUMP`` short sides away (where the frame has room), reached on the first frame
    back, then walks on from there.
    """

    walker: Walker
    start: int
    frames: int

    def pose(self) -> Pose:
        return self.walker.pose()

    def step(self, t: int, rng: np.random.Generator) -> None:
        """Advance from frame ``t - 1`` to frame ``t``."""
        if t == self.start:
            self.walker.path = self._jump(rng)
        self.walker.step(t, rng)

    def _jump(self, rng: np.random.Generator) -> list[tuple[float, float]]:
        """Positions for frames ``start .. start + frames``: a straight line to the new place."""
        walker = self.walker
        height, width = walker.size_hw
        (low_x, high_x), (low_y, high_y) = walker.band(width), walker.band(height)
        here = np.array([walker.x, walker.y])
        places = rng.uniform((low_x, low_y), (high_x, high_y), (CUT_JUMP_CANDIDATES, 2))
        distances = np.linalg.norm(places - here, axis=1)
        far = np.flatnonzero(distances >= CUT_MIN_JUMP * walker.unit)
        there = places[far[0] if far.size else int(np.argmax(distances))]
        steps = np.arange(1, self.frames + 2) / (self.frames + 1)
        return [tuple(point) for point in here + np.outer(steps, there - here)]


@dataclass(frozen=True)
class FamilyPlan:
    """Everything needed to render a family clip (rendering copies the motions).

    Attributes:
      info (ClipInfo): name, family, attributes, size, frames, ids.
      background (np.ndarray): (h, w, 3) float32 world canvas (the frame size without a camera).
      tracks (tuple[Track, ...]): actors in z-order with their motions.
      camera (Camera | None): the moving view, None for a fixed camera.
      lighting (ClipLighting): smooth global lighting, noise and blur.
      light_drift (np.ndarray): (3,) factor the gain reaches by the last frame (ones: none).
      motion_seed, noise_seed (np.random.SeedSequence): streams of the random walks and noise.
      cut (CutAway | None): another shot that replaces the scene for a few frames, or None.
    """

    info: ClipInfo
    background: np.ndarray
    tracks: tuple[Track, ...]
    camera: Camera | None
    lighting: ClipLighting
    light_drift: np.ndarray
    motion_seed: np.random.SeedSequence
    noise_seed: np.random.SeedSequence
    cut: CutAway | None = None


@dataclass
class _Parts:
    """What a family builder draws: the world, the actors and how the view and light change."""

    background: np.ndarray
    tracks: list[Track]
    camera: Camera | None = None
    light_drift: np.ndarray = field(default_factory=lambda: np.ones(3, dtype=np.float32))
    leaving_ids: tuple[int, ...] = ()
    cut: CutAway | None = None


def _spin(rng: np.random.Generator) -> tuple[float, float]:
    return rng.uniform(0.0, 360.0), rng.uniform(-MAX_SPIN_DEG, MAX_SPIN_DEG)


def _inside(
    rng: np.random.Generator, radius: float, size_hw: tuple[int, int]
) -> tuple[float, float]:
    """A random centre at which a disc of ``radius`` lies wholly inside the frame."""
    height, width = size_hw
    margin = radius + EDGE_PAD_PX
    return rng.uniform(margin, max(margin, width - margin)), rng.uniform(
        margin, max(margin, height - margin)
    )


def _clutter(
    rng: np.random.Generator,
    targets: list[Appearance],
    size_hw: tuple[int, int],
    n_frames: int,
    count_range: tuple[int, int] = CLUTTER_RANGE,
) -> list[Track]:
    """Static background distractors (a target's colours with another shape or texture)."""
    short = min(size_hw)
    tracks = []
    for _ in range(integer_in(rng, count_range)):
        radius = rng.uniform(*DISTRACTOR_RADIUS_RANGE) * short
        sprite = build_sprite(sample_distractor_appearance(rng, targets), radius)
        tracks.append(Track(Actor(sprite), random_static(rng, size_hw, n_frames)))
    return tracks


def _walkers(
    rng: np.random.Generator,
    targets: list[Appearance],
    size_hw: tuple[int, int],
    n_frames: int,
    shrink: float,
    first_label: int = 1,
    speed: float = 1.0,
    world: bool = True,
) -> list[Track]:
    """Targets on smooth random walks (labels from ``first_label``)."""
    radius_range = CROWDED_RADIUS_RANGE if len(targets) > 1 else CLIP_RADIUS_RANGE
    tracks = []
    for label, appearance in enumerate(targets, start=first_label):
        radius = rng.uniform(*radius_range) * min(size_hw) * shrink
        actor = Actor(build_sprite(appearance, radius), label)
        walker = random_walker(rng, radius, size_hw, n_frames, speed)
        tracks.append(Track(actor, walker, world=world))
    return tracks


def _occlusion(
    rng: np.random.Generator, size_hw: tuple[int, int], n_frames: int, shrink: float
) -> _Parts:
    height, width = size_hw
    short = min(size_hw)
    background = make_background(rng, size_hw)
    targets = sample_target_appearances(rng, 2)
    tracks = _clutter(rng, targets, size_hw, n_frames)
    radii = [rng.uniform(*OCCLUSION_RADIUS_RANGE) * short * shrink for _ in targets]
    row = rng.uniform(*OCCLUSION_ROW_RANGE) * height
    offset = rng.uniform(-OCCLUSION_ROW_OFFSET, OCCLUSION_ROW_OFFSET) * min(radii)
    first_left = bool(rng.integers(2))
    for label, (appearance, radius) in enumerate(zip(targets, radii, strict=True), start=1):
        margin = radius + EDGE_PAD_PX
        near = max(margin, rng.uniform(*OCCLUSION_START_RANGE) * width)
        far = min(width - margin, width - rng.uniform(*OCCLUSION_START_RANGE) * width)
        if (label == 1) != first_left:
            near, far = far, near
        y0 = row + (offset if label == 2 else 0.0)
        y1 = y0 + rng.uniform(-OCCLUSION_DRIFT, OCCLUSION_DRIFT) * height
        y0, y1 = (float(np.clip(y, margin, height - margin)) for y in (y0, y1))
        angle, omega = _spin(rng)
        path = Ramp((near, y0), (far, y1), n_frames, angle=angle, omega=omega)
        tracks.append(Track(Actor(build_sprite(appearance, radius), label), path))
    pole_appearance = sample_bar_appearance(rng, targets)
    pole_x = rng.uniform(*POLE_RANGE) * width
    if rng.integers(2):
        pole_x = width - pole_x
    drift = rng.uniform(-POLE_DRIFT, POLE_DRIFT) * width
    pole = build_sprite(pole_appearance, max(size_hw))  # longer than the frame: a full-height pole
    sweep = Sweep((pole_x, height / 2.0), (pole_x + drift, height / 2.0), n_frames, angle=90.0)
    tracks.append(Track(Actor(pole, foreground=True), sweep))
    return _Parts(background, tracks)


def _out_of_view(
    rng: np.random.Generator, size_hw: tuple[int, int], n_frames: int, shrink: float
) -> _Parts:
    background = make_background(rng, size_hw)
    targets = sample_target_appearances(rng, integer_in(rng, TARGETS_RANGE))
    tracks = _clutter(rng, targets, size_hw, n_frames)
    walkers = _walkers(rng, targets, size_hw, n_frames, shrink)
    leaving = int(rng.integers(len(walkers)))
    walker = walkers[leaving].motion
    walker.leave_at = max(1, int(rng.uniform(*LEAVE_START_RANGE) * n_frames))
    walker.hidden_frames = integer_in(rng, HIDDEN_FRAMES_RANGE)
    return _Parts(background, tracks + walkers, leaving_ids=(leaving + 1,))


def _distractors(
    rng: np.random.Generator, size_hw: tuple[int, int], n_frames: int, shrink: float
) -> _Parts:
    background = make_background(rng, size_hw)
    targets = sample_target_appearances(rng, integer_in(rng, TARGETS_RANGE))
    below = _clutter(rng, targets, size_hw, n_frames)
    walkers = _walkers(rng, targets, size_hw, n_frames, shrink)
    above = []
    for _ in range(integer_in(rng, COPIES_RANGE)):
        original = walkers[int(rng.integers(len(walkers)))]
        sprite = original.actor.sprite
        copy_track = Track(Actor(sprite), random_walker(rng, sprite.radius, size_hw, n_frames))
        (above if rng.random() < COPY_ON_TOP_PROB else below).append(copy_track)
    return _Parts(background, below + walkers + above)


def _shift_hue(colors: np.ndarray, shift: float) -> np.ndarray:
    """``colors`` (N, 3) RGB 0..255 with their hue turned by ``shift`` (fraction of the circle)."""
    shifted = []
    for rgb in colors / RGB_MAX:
        hue, saturation, value = colorsys.rgb_to_hsv(*rgb)
        shifted.append(colorsys.hsv_to_rgb((hue + shift) % 1.0, saturation, value))
    return (np.asarray(shifted, dtype=np.float32) * np.float32(RGB_MAX)).astype(np.float32)


def _appearance_change(
    rng: np.random.Generator, size_hw: tuple[int, int], n_frames: int, shrink: float
) -> _Parts:
    background = make_background(rng, size_hw)
    targets = sample_target_appearances(rng, integer_in(rng, TARGETS_RANGE))
    tracks = _clutter(rng, targets, size_hw, n_frames)
    for track, appearance in zip(
        _walkers(rng, targets, size_hw, n_frames, shrink), targets, strict=True
    ):
        shift = rng.uniform(*HUE_SHIFT_RANGE) * (1 if rng.integers(2) else -1)
        texture = TEXTURE_KINDS[rng.integers(len(TEXTURE_KINDS))]
        while texture == appearance.texture:
            texture = TEXTURE_KINDS[rng.integers(len(TEXTURE_KINDS))]
        end = replace(appearance, texture=texture, colors=_shift_hue(appearance.colors, shift))
        tracks.append(replace(track, end_sprite=build_sprite(end, track.actor.sprite.radius)))
    gain = rng.uniform(*(DARKEN_RANGE if rng.integers(2) else BRIGHTEN_RANGE))
    drift = gain * (1.0 + rng.uniform(-DRIFT_TINT, DRIFT_TINT, 3))
    return _Parts(background, tracks, light_drift=drift.astype(np.float32))


def _scale_change(
    rng: np.random.Generator, size_hw: tuple[int, int], n_frames: int, shrink: float
) -> _Parts:
    background = make_background(rng, size_hw)
    targets = sample_target_appearances(rng, integer_in(rng, TARGETS_RANGE))
    tracks = _clutter(rng, targets, size_hw, n_frames)
    # The others walk below the scaled target (the last label), which is never occluded.
    tracks += _walkers(rng, targets[:-1], size_hw, n_frames, shrink)
    radius = rng.uniform(*SCALE_MAX_RADIUS_RANGE) * min(size_hw) * shrink
    factor = rng.uniform(*SCALE_FACTOR_RANGE)
    scales = (1.0 / factor, 1.0) if rng.integers(2) else (1.0, 1.0 / factor)
    angle, omega = _spin(rng)
    path = Ramp(
        _inside(rng, radius, size_hw),
        _inside(rng, radius, size_hw),
        n_frames,
        *scales,
        angle=angle,
        omega=omega,
    )
    actor = Actor(build_sprite(targets[-1], radius), len(targets))
    return _Parts(background, [*tracks, Track(actor, path)])


def _fast_motion(
    rng: np.random.Generator, size_hw: tuple[int, int], n_frames: int, shrink: float
) -> _Parts:
    height, width = size_hw
    short = min(size_hw)
    background = make_background(rng, size_hw)
    targets = sample_target_appearances(rng, integer_in(rng, TARGETS_RANGE))
    tracks = _clutter(rng, targets, size_hw, n_frames)
    tracks += _walkers(rng, targets[:-1], size_hw, n_frames, shrink)
    radius = rng.uniform(*FAST_RADIUS_RANGE) * short * shrink
    room = radius + EDGE_PAD_PX  # the object stays wholly inside the frame
    a = (width / 2.0 - room) * rng.uniform(*ORBIT_FILL_RANGE)
    b = (height / 2.0 - room) * rng.uniform(*ORBIT_FILL_RANGE)
    step = rng.uniform(*FAST_STEP_RANGE) * short
    phase_step = 2.0 * np.arcsin(min(step / (2.0 * min(a, b)), 1.0))
    direction = 1 if rng.integers(2) else -1
    angle, omega = _spin(rng)
    orbit = Orbit(
        width / 2.0,
        height / 2.0,
        a,
        b,
        tilt=0.0,
        phase=rng.uniform(0.0, 2 * np.pi),
        phase_step=direction * phase_step,
        angle=angle,
        omega=omega,
    )
    actor = Actor(build_sprite(targets[-1], radius), len(targets))
    return _Parts(background, [*tracks, Track(actor, orbit)])


def _camera_motion(
    rng: np.random.Generator, size_hw: tuple[int, int], n_frames: int, shrink: float
) -> _Parts:
    height, width = size_hw
    short = min(size_hw)
    margin = int(np.ceil(CAMERA_PAN_RANGE[1] / 2.0 * short + EDGE_PAD_PX))
    world_hw = (height + 2 * margin, width + 2 * margin)
    background = make_background(rng, world_hw, CAMERA_BACKGROUNDS)
    targets = sample_target_appearances(rng, integer_in(rng, TARGETS_RANGE))
    clutter = _clutter(rng, targets, world_hw, n_frames, CAMERA_CLUTTER_RANGE)
    followed = _walkers(
        rng, targets, size_hw, n_frames, shrink, speed=CAMERA_TARGET_SPEED, world=False
    )
    pan = rng.uniform(*CAMERA_PAN_RANGE) * short
    heading = rng.uniform(0.0, 2 * np.pi)
    half = 0.5 * pan * np.array([np.cos(heading), np.sin(heading)])
    centre = np.array([world_hw[1] / 2.0, world_hw[0] / 2.0])
    zoom = rng.uniform(*CAMERA_ZOOM_RANGE)
    zooms = (1.0, zoom) if rng.integers(2) else (zoom, 1.0)
    camera = Camera(tuple(centre - half), tuple(centre + half), *zooms, n_frames)
    return _Parts(background, clutter + followed, camera=camera)


def _scene_cut(
    rng: np.random.Generator, size_hw: tuple[int, int], n_frames: int, shrink: float
) -> _Parts:
    scene_kind, shot_kind = (
        BACKGROUND_KINDS[k] for k in rng.choice(len(BACKGROUND_KINDS), size=2, replace=False)
    )
    background = make_background(rng, size_hw, (scene_kind,))
    targets = sample_target_appearances(rng, integer_in(rng, TARGETS_RANGE))
    tracks = _clutter(rng, targets, size_hw, n_frames)
    start = max(1, int(rng.uniform(*CUT_START_RANGE) * n_frames))
    frames = integer_in(rng, CUT_FRAMES_RANGE)
    for track in _walkers(rng, targets, size_hw, n_frames, shrink):
        tracks.append(replace(track, motion=CutWalker(track.motion, start, frames)))
    shot = []
    for _ in range(integer_in(rng, CUT_OBJECTS_RANGE)):
        look_alike = rng.random() < CUT_LOOK_ALIKE_PROB
        appearance = sample_distractor_appearance(rng, targets if look_alike else [])
        radius = rng.uniform(*CLIP_RADIUS_RANGE) * min(size_hw)
        walker = random_walker(rng, radius, size_hw, n_frames)
        shot.append(Track(Actor(build_sprite(appearance, radius)), walker))
    gain = rng.uniform(*(CUT_DARKEN_RANGE if rng.integers(2) else CUT_BRIGHTEN_RANGE))
    gain = gain * (1.0 + rng.uniform(-CUT_TINT, CUT_TINT, 3))
    shot_background = make_background(rng, size_hw, (shot_kind,))
    cut = CutAway(start, frames, shot_background, tuple(shot), gain.astype(np.float32))
    return _Parts(background, tracks, cut=cut)


_BUILDERS = {
    OCCLUSION: _occlusion,
    OUT_OF_VIEW: _out_of_view,
    DISTRACTORS: _distractors,
    APPEARANCE_CHANGE: _appearance_change,
    SCALE_CHANGE: _scale_change,
    FAST_MOTION: _fast_motion,
    CAMERA_MOTION: _camera_motion,
    SCENE_CUT: _scene_cut,
}


def _frame_actors_and_poses(
    tracks: tuple[Track, ...],
    motions: list[Motion],
    camera: Camera | None,
    t: int,
    n_frames: int,
    size_hw: tuple[int, int],
) -> tuple[list[Actor], list[Pose]]:
    """The actors (their look at frame ``t``) and their poses in the frame."""
    fraction = t / max(n_frames - 1, 1)
    actors, poses = [], []
    for track, motion in zip(tracks, motions, strict=True):
        pose = motion.pose()
        if camera is not None:
            pose = camera.view(pose, t, size_hw, track.world)
        actor = track.actor
        if track.end_sprite is not None:
            rgba = cv2.addWeighted(
                actor.sprite.rgba, 1.0 - fraction, track.end_sprite.rgba, fraction, 0.0
            )
            actor = replace(actor, sprite=Sprite(rgba, actor.sprite.radius))
        actors.append(actor)
        poses.append(pose)
    return actors, poses


def _first_frame_ok(parts: _Parts, size_hw: tuple[int, int], n_objects: int) -> bool:
    actors, poses = _frame_actors_and_poses(
        tuple(parts.tracks), [t.motion for t in parts.tracks], parts.camera, 0, 1, size_hw
    )
    layers = compose(size_hw, actors, poses, n_labels=n_objects)
    min_area = FIRST_FRAME_MIN_AREA_FRACTION * size_hw[0] * size_hw[1]
    return visible_enough(layers, min_area, FIRST_FRAME_MIN_VISIBLE_RATIO)


def plan_family_clip(
    family: str,
    seed: int,
    *,
    split: str = "test",
    n_frames: int | None = None,
    size_hw: tuple[int, int] | None = None,
) -> FamilyPlan:
    """Draw a family clip (nothing is rendered yet).

    Arguments:
      family (str): one of ``FAMILIES``.
      seed (int): per-split seed (benchmarks: ``"test"`` seeds from ``BENCHMARK_FIRST_SEED``).
      split (str): ``"train"``, ``"val"`` or ``"test"``.
      n_frames (int | None): clip length (default ``FAMILY_FRAMES``; at least
        ``FAMILY_MIN_FRAMES``).
      size_hw (tuple[int, int] | None): frame size (default: drawn from ``CLIP_SIZES_HW``).

    Returns:
      (FamilyPlan): the plan; every target covers at least ``FIRST_FRAME_MIN_AREA_FRACTION`` of
        the first frame and shows ``FIRST_FRAME_MIN_VISIBLE_RATIO`` of itself there.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown clip family {family!r}; known: {', '.join(FAMILIES)}")
    n_frames = FAMILY_FRAMES if n_frames is None else int(n_frames)
    if n_frames < FAMILY_MIN_FRAMES:
        raise ValueError(f"a family clip needs at least {FAMILY_MIN_FRAMES} frames, got {n_frames}")
    entropy = [split_seed(split, seed), FAMILY_STREAMS[family]]
    config_seed, scene_seed, motion_seed, noise_seed = np.random.SeedSequence(entropy).spawn(4)
    config = np.random.default_rng(config_seed)
    drawn_size = CLIP_SIZES_HW[config.integers(len(CLIP_SIZES_HW))]
    fps = CLIP_FPS[config.integers(len(CLIP_FPS))]
    size_hw = drawn_size if size_hw is None else (int(size_hw[0]), int(size_hw[1]))

    rng = np.random.default_rng(scene_seed)
    shrink = 1.0
    for _ in range(MAX_PLAN_TRIES):
        parts = _BUILDERS[family](rng, size_hw, n_frames, shrink)
        n_objects = max(track.actor.label for track in parts.tracks)
        if _first_frame_ok(parts, size_hw, n_objects):
            break
        shrink *= SHRINK_PER_TRY
    else:
        raise RuntimeError(f"no valid first frame for {family} clip {seed} after {MAX_PLAN_TRIES}")
    info = ClipInfo(
        name=f"synth-{family}-{split}-{seed:05d}",
        split=split,
        seed=int(seed),
        size_hw=size_hw,
        n_frames=n_frames,
        fps=fps,
        object_ids=tuple(range(1, n_objects + 1)),
        leaving_ids=parts.leaving_ids,
        family=family,
        attributes=FAMILIES[family],
    )
    return FamilyPlan(
        info=info,
        background=parts.background,
        tracks=tuple(parts.tracks),
        camera=parts.camera,
        lighting=random_clip_lighting(rng, n_frames),
        light_drift=np.asarray(parts.light_drift, dtype=np.float32),
        motion_seed=motion_seed,
        noise_seed=noise_seed,
        cut=parts.cut,
    )


def render_family_plan(plan: FamilyPlan) -> Iterator[tuple[np.ndarray, Layers]]:
    """Render a plan frame by frame: ``(frame (H, W, 3) uint8 RGB, layers)``, where the layers
    hold the visible label map, the amodal masks of the targets and the foreground mask.

    The scene's and the other shot's motions advance on every frame (the scene goes on while the
    video shows the other shot); a frame draws the one that shows."""
    info = plan.info
    motions = [copy.deepcopy(track.motion) for track in plan.tracks]
    shot_tracks = () if plan.cut is None else plan.cut.tracks
    shot_motions = [copy.deepcopy(track.motion) for track in shot_tracks]
    motion_rng = np.random.default_rng(plan.motion_seed)
    noise_rng = np.random.default_rng(plan.noise_seed)
    height, width = info.size_hw
    lighting = plan.lighting
    for t in range(info.n_frames):
        if t:
            for motion in motions + shot_motions:
                motion.step(t, motion_rng)
        cut = plan.cut if plan.cut is not None and plan.cut.shows(t) else None
        if cut is not None:
            actors, poses = _frame_actors_and_poses(
                shot_tracks, shot_motions, None, t, info.n_frames, info.size_hw
            )
            background = cut.background
        else:
            actors, poses = _frame_actors_and_poses(
                plan.tracks, motions, plan.camera, t, info.n_frames, info.size_hw
            )
            if plan.camera is None:
                background = plan.background
            else:
                background = cv2.warpAffine(
                    plan.background,
                    plan.camera.matrix(t, info.size_hw),
                    (width, height),
                    flags=cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REFLECT,
                )
        layers = compose(info.size_hw, actors, poses, background, len(info.object_ids))
        gain, bias = lighting.at(t)
        fraction = t / max(info.n_frames - 1, 1)
        gain = gain * (1.0 + fraction * (plan.light_drift - 1.0))
        if cut is not None:
            gain = gain * cut.gain
        frame = finish_image(
            layers.image,
            noise_rng,
            gain.astype(np.float32),
            bias,
            lighting.noise_sigma,
            lighting.blur,
        )
        yield frame, layers


def family_clip_info(
    family: str,
    seed: int,
    *,
    split: str = "test",
    n_frames: int | None = None,
    size_hw: tuple[int, int] | None = None,
) -> ClipInfo:
    """Describe the clip that :func:`make_family_clip` would render with the same arguments."""
    return plan_family_clip(family, seed, split=split, n_frames=n_frames, size_hw=size_hw).info


def iter_family_clip(
    family: str,
    seed: int,
    *,
    split: str = "test",
    n_frames: int | None = None,
    size_hw: tuple[int, int] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Render a family clip lazily: ``(frame (H, W, 3) uint8 RGB, labels (H, W) uint8)``."""
    plan = plan_family_clip(family, seed, split=split, n_frames=n_frames, size_hw=size_hw)
    return ((frame, layers.labels) for frame, layers in render_family_plan(plan))


def make_family_clip(
    family: str,
    seed: int,
    *,
    split: str = "test",
    n_frames: int | None = None,
    size_hw: tuple[int, int] | None = None,
) -> Clip:
    """Render a whole family clip (see :func:`plan_family_clip` for the arguments)."""
    plan = plan_family_clip(family, seed, split=split, n_frames=n_frames, size_hw=size_hw)
    frames, labels = [], []
    for frame, layers in render_family_plan(plan):
        frames.append(frame)
        labels.append(layers.labels)
    info = plan.info
    return Clip(
        info.name,
        frames,
        labels,
        info.fps,
        info.object_ids,
        info.leaving_ids,
        info.family,
        info.attributes,
    )
