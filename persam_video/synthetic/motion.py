"""Object motion over a clip: smooth random walks (with optional exits) and linear sweeps.

Positions are in pixels, angles in degrees; speeds are fractions of the frame's short side per
frame. A motion is stateful: ``pose()`` gives the current pose and ``step(t, rng)`` advances it to
frame ``t``, so a clip renders lazily. All randomness comes from the generator passed to ``step``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from persam_video.synthetic.compose import Pose

# Object motion, in units of the short side per frame (degrees for rotation).
START_RANGE = (0.15, 0.85)  # start / return points, as a fraction of the frame width or height
SPEED_RANGE = (0.008, 0.03)
MAX_SPEED = 0.045
ACCEL_SIGMA = 0.002
KICK_PROB = 0.04  # per frame: draw a new velocity
HEADING_SPREAD_DEG = 60.0  # initial heading: towards the frame centre, give or take this
SCALE_RANGE = (0.8, 1.25)
LOG_SCALE_SIGMA = 0.012
LOG_SCALE_PULL = 0.05  # mean reversion of the log scale per frame
OMEGA_RANGE_DEG = 1.5
OMEGA_SIGMA_DEG = 0.25
MAX_OMEGA_DEG = 3.0
BORDER_MARGIN = 0.5  # centres stay this many (scaled) radii inside the frame: partly cut at most

# Occluders sweep across the frame; a bar (pole) stands roughly upright or lies roughly flat.
BAR_TILT_DEG = 15.0
SWEEP_START_RANGE = (0.0, 0.25)  # sweep from here to the mirrored range, fraction of the frame
SWEEP_CROSS_RANGE = (0.3, 0.7)  # the other coordinate
MAX_OCCLUDER_SPIN_DEG = 1.0

# Leaving the frame and coming back (the timing is planned by the clip).
EXIT_SPEED = 0.04  # short side per frame (faster when the clip is too short for it)
EXIT_MARGIN_PX = 2.0
EXIT_TAIL_FRAMES = 6  # frames left after the object is back
RETURN_DEPTH_RANGE = (0.7, 1.5)  # where the object comes back: radii inside the frame edge


class Motion(Protocol):
    """A stateful motion: the pose of one actor in the current frame."""

    def pose(self) -> Pose:
        """The pose in the current frame."""
        ...

    def step(self, t: int, rng: np.random.Generator) -> None:
        """Advance from frame ``t - 1`` to frame ``t``."""
        ...


@dataclass
class Walker:
    """Smooth random-walk motion of one object; optionally leaves the frame and comes back.

    Positions are in pixels; ``unit`` is the frame's short side in pixels.
    """

    x: float
    y: float
    vx: float
    vy: float
    radius: float
    unit: float
    size_hw: tuple[int, int]
    n_frames: int
    log_scale: float = 0.0
    angle: float = 0.0
    omega: float = 0.0
    speed_factor: float = 1.0
    leave_at: int | None = None
    hidden_frames: int = 0
    path: list[tuple[float, float]] = field(default_factory=list)

    def pose(self) -> Pose:
        return Pose(self.x, self.y, float(np.exp(self.log_scale)), self.angle)

    def step(self, t: int, rng: np.random.Generator) -> None:
        """Advance from frame ``t - 1`` to frame ``t``."""
        if t == self.leave_at:
            self.path = self._excursion(t, rng)
        if self.path:
            self._follow_path(rng)
        else:
            self._drift(rng)
        self._turn_and_zoom(rng)

    def set_heading(self, rng: np.random.Generator, heading: float) -> None:
        """Move in direction ``heading`` (radians) at a random speed from ``SPEED_RANGE``."""
        speed = rng.uniform(*SPEED_RANGE) * self.unit * self.speed_factor
        self.vx, self.vy = speed * np.cos(heading), speed * np.sin(heading)

    def _drift(self, rng: np.random.Generator) -> None:
        if rng.random() < KICK_PROB:
            self.set_heading(rng, rng.uniform(0.0, 2 * np.pi))
        else:
            self.vx, self.vy = np.array([self.vx, self.vy]) + rng.normal(
                0.0, ACCEL_SIGMA * self.unit * self.speed_factor, 2
            )
        speed = np.hypot(self.vx, self.vy)
        max_speed = MAX_SPEED * self.unit * self.speed_factor
        if speed > max_speed:
            self.vx, self.vy = self.vx * max_speed / speed, self.vy * max_speed / speed
        self.x, self.vx = self._reflect(self.x + self.vx, self.vx, self.size_hw[1])
        self.y, self.vy = self._reflect(self.y + self.vy, self.vy, self.size_hw[0])

    def band(self, length: int, scale: float | None = None) -> tuple[float, float]:
        """Allowed centre coordinates along an axis of ``length`` pixels: the object stays mostly
        inside the frame (at the current scale by default)."""
        scale = float(np.exp(self.log_scale)) if scale is None else scale
        margin = min(BORDER_MARGIN * self.radius * scale, length / 2.0)
        return margin, length - margin

    def _reflect(self, position: float, velocity: float, length: int) -> tuple[float, float]:
        """Bounce off the ends of the allowed band."""
        low, high = self.band(length)
        if position < low:
            position, velocity = low + (low - position), abs(velocity)
        elif position > high:
            position, velocity = high - (position - high), -abs(velocity)
        return float(np.clip(position, low, high)), velocity

    def _turn_and_zoom(self, rng: np.random.Generator) -> None:
        self.omega = float(
            np.clip(self.omega + rng.normal(0.0, OMEGA_SIGMA_DEG), -MAX_OMEGA_DEG, MAX_OMEGA_DEG)
        )
        self.angle += self.omega
        low, high = np.log(SCALE_RANGE)
        low = min(low, self.log_scale)  # a smaller start (fallback layout) recovers gradually
        log_scale = self.log_scale * (1.0 - LOG_SCALE_PULL) + rng.normal(0.0, LOG_SCALE_SIGMA)
        self.log_scale = float(np.clip(log_scale, low, high))

    def _follow_path(self, rng: np.random.Generator) -> None:
        x, y = self.path.pop(0)
        self.vx, self.vy, self.x, self.y = x - self.x, y - self.y, x, y
        if not self.path:  # back inside: resume the random walk, heading the same way
            self.set_heading(rng, float(np.arctan2(self.vy, self.vx)))

    def _excursion(self, t: int, rng: np.random.Generator) -> list[tuple[float, float]]:
        """Positions for frames ``t, t+1, ...``: out through the nearest edge, hidden, back in."""
        height, width = self.size_hw
        extent = self.radius * SCALE_RANGE[1] + EXIT_MARGIN_PX
        depth = rng.uniform(*RETURN_DEPTH_RANGE) * self.radius
        across_x = rng.uniform(*START_RANGE) * width
        across_y = rng.uniform(*START_RANGE) * height
        side = int(np.argmin([self.x, width - self.x, self.y, height - self.y]))
        outside, inside = [
            ((-extent, self.y), (depth, across_y)),
            ((width + extent, self.y), (width - depth, across_y)),
            ((self.x, -extent), (across_x, depth)),
            ((self.x, height + extent), (across_x, height - depth)),
        ][side]
        (low_x, high_x), (low_y, high_y) = (self.band(n, SCALE_RANGE[1]) for n in (width, height))
        inside = np.clip(inside, (low_x, low_y), (high_x, high_y))
        start, outside = np.array([self.x, self.y]), np.array(outside)
        d_out, d_in = np.linalg.norm(outside - start), np.linalg.norm(inside - outside)
        frames_left = max(self.n_frames - t - self.hidden_frames - EXIT_TAIL_FRAMES, 2)
        speed = max(EXIT_SPEED * self.unit, (d_out + d_in) / frames_left)
        n_out, n_in = max(1, int(np.ceil(d_out / speed))), max(1, int(np.ceil(d_in / speed)))
        leg_out = start + np.outer(np.arange(1, n_out + 1) / n_out, outside - start)
        leg_in = outside + np.outer(np.arange(1, n_in + 1) / n_in, inside - outside)
        hidden = np.repeat(outside[None], self.hidden_frames, axis=0)
        return [tuple(point) for point in np.concatenate([leg_out, hidden, leg_in])]


@dataclass
class Sweep:
    """Linear motion from ``start`` to ``end`` over the clip with a constant spin (occluders)."""

    start: tuple[float, float]
    end: tuple[float, float]
    n_frames: int
    angle: float = 0.0
    omega: float = 0.0
    t: int = 0

    def pose(self) -> Pose:
        fraction = self.t / max(self.n_frames - 1, 1)
        x = self.start[0] + fraction * (self.end[0] - self.start[0])
        y = self.start[1] + fraction * (self.end[1] - self.start[1])
        return Pose(x, y, 1.0, self.angle + self.omega * self.t)

    def step(self, t: int, rng: np.random.Generator) -> None:
        self.t = t


def random_walker(
    rng: np.random.Generator,
    radius: float,
    size_hw: tuple[int, int],
    n_frames: int,
    speed_factor: float = 1.0,
) -> Walker:
    """A walker at a random start, heading roughly towards the frame centre (to meet others)."""
    height, width = size_hw
    x, y = rng.uniform(*START_RANGE) * width, rng.uniform(*START_RANGE) * height
    walker = Walker(
        x=x,
        y=y,
        vx=0.0,
        vy=0.0,
        radius=radius,
        unit=min(size_hw),
        size_hw=size_hw,
        n_frames=n_frames,
        angle=rng.uniform(0.0, 360.0),
        omega=rng.uniform(-OMEGA_RANGE_DEG, OMEGA_RANGE_DEG),
        speed_factor=speed_factor,
    )
    walker.x, walker.y = (
        float(np.clip(x, *walker.band(width))),
        float(np.clip(y, *walker.band(height))),
    )
    heading = np.arctan2(height / 2 - walker.y, width / 2 - walker.x)
    walker.set_heading(rng, heading + np.deg2rad(rng.uniform(-1, 1) * HEADING_SPREAD_DEG))
    return walker


def random_sweep(
    rng: np.random.Generator, size_hw: tuple[int, int], n_frames: int, is_bar: bool
) -> Sweep:
    """An occluder path across the frame: horizontal or vertical, either direction."""
    horizontal = bool(rng.integers(2))
    start = rng.uniform(*SWEEP_START_RANGE)
    end = 1.0 - rng.uniform(*SWEEP_START_RANGE)
    if rng.integers(2):
        start, end = end, start
    cross_start, cross_end = rng.uniform(*SWEEP_CROSS_RANGE, 2)
    height, width = size_hw
    if horizontal:  # moves along x; a bar then stands upright
        points = ((start * width, cross_start * height), (end * width, cross_end * height))
        angle = 90.0
    else:
        points = ((cross_start * width, start * height), (cross_end * width, end * height))
        angle = 0.0
    if is_bar:
        angle += rng.uniform(-BAR_TILT_DEG, BAR_TILT_DEG)
        omega = rng.uniform(-1, 1) * BAR_TILT_DEG / max(n_frames, 1)
    else:
        angle = rng.uniform(0.0, 360.0)
        omega = rng.uniform(-MAX_OCCLUDER_SPIN_DEG, MAX_OCCLUDER_SPIN_DEG)
    return Sweep(points[0], points[1], n_frames, angle, omega)


def random_static(rng: np.random.Generator, size_hw: tuple[int, int], n_frames: int) -> Sweep:
    """A motionless pose at a random place and angle (a static background distractor)."""
    height, width = size_hw
    point = (rng.uniform(*START_RANGE) * width, rng.uniform(*START_RANGE) * height)
    return Sweep(point, point, n_frames, rng.uniform(0.0, 360.0))


@dataclass
class Ramp:
    """Linear motion from ``start`` to ``end`` over the clip with a geometric scale ramp from
    ``scale_start`` to ``scale_end`` and a constant spin (objects that approach or recede, and
    objects on straight paths that cross each other)."""

    start: tuple[float, float]
    end: tuple[float, float]
    n_frames: int
    scale_start: float = 1.0
    scale_end: float = 1.0
    angle: float = 0.0
    omega: float = 0.0
    t: int = 0

    def pose(self) -> Pose:
        fraction = self.t / max(self.n_frames - 1, 1)
        x = self.start[0] + fraction * (self.end[0] - self.start[0])
        y = self.start[1] + fraction * (self.end[1] - self.start[1])
        scale = self.scale_start * (self.scale_end / self.scale_start) ** fraction
        return Pose(x, y, float(scale), self.angle + self.omega * self.t)

    def step(self, t: int, rng: np.random.Generator) -> None:
        self.t = t


@dataclass
class Orbit:
    """Motion along an ellipse at a constant angular step (fast motion).

    The centre is ``(cx, cy)``, the semi-axes ``(a, b)`` pixels, the ellipse is rotated by
    ``tilt`` radians and the object advances ``phase_step`` radians per frame. Between two frames
    the object moves at least ``2 * min(a, b) * sin(|phase_step| / 2)`` pixels (a chord of the
    ellipse is at least that long), see :meth:`min_step`.
    """

    cx: float
    cy: float
    a: float
    b: float
    tilt: float
    phase: float
    phase_step: float
    angle: float = 0.0
    omega: float = 0.0
    t: int = 0

    def pose(self) -> Pose:
        phi = self.phase + self.phase_step * self.t
        u, v = self.a * np.cos(phi), self.b * np.sin(phi)
        cos, sin = np.cos(self.tilt), np.sin(self.tilt)
        x, y = self.cx + u * cos - v * sin, self.cy + u * sin + v * cos
        return Pose(float(x), float(y), 1.0, self.angle + self.omega * self.t)

    def step(self, t: int, rng: np.random.Generator) -> None:
        self.t = t

    def min_step(self) -> float:
        """The least distance in pixels the centre moves from one frame to the next."""
        return float(2.0 * min(self.a, self.b) * np.sin(abs(self.phase_step) / 2.0))
