"""The engine seam: what a tracking engine gives the one output pipeline.

An engine opens a :class:`TrackingSession` on one video's frames; the session takes prompts
(masks, clicks, boxes on any frame) and saved targets, and :meth:`TrackingSession.propagate`
yields per-frame results (:class:`~persam_video.video.session.SessionResult`: the frame's label
map, each object's mask area, box and scores) in the order it computes them. Everything that
writes a run folder (:mod:`persam_video.apps.pipeline`: ``track``, ``find``, ``batch``,
``davis``, the app) talks to this interface only, so a second engine plugs in without touching
outputs, the command line, the app, batch, find or evaluation.

Today's engine is PerSAM (:class:`PerSAMEngine`, sessions are
:class:`~persam_video.video.session.VideoSession`). The vocabulary follows SAM 2's video
predictor (``init_state`` / ``add_new_points_or_box`` / ``add_new_mask`` /
``propagate_in_video(reverse=...)``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from persam_video.labels import LabelMap
from persam_video.persam.api import Target
from persam_video.persam.prompts import PromptMask
from persam_video.video.session import (
    PERSAM_ENGINE,
    Direction,
    Prompt,
    SessionResult,
    VideoSession,
    check_keyframes,
    engine_record,
)
from persam_video.video.tracker import VideoTracker

__all__ = ["Engine", "PerSAMEngine", "TrackingSession", "as_engine"]


@runtime_checkable
class TrackingSession(Protocol):
    """One video's tracking state: prompts and targets in, per-frame results out."""

    #: Every prompt, in the order given.
    prompts: list[Prompt]

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the frames."""
        ...

    @property
    def object_ids(self) -> list[int]:
        """Ids of the prompted objects, sorted."""
        ...

    @property
    def target_ids(self) -> list[int]:
        """Ids of the saved targets, sorted."""
        ...

    @property
    def annotated_frames(self) -> list[int]:
        """Frames with at least one prompt, increasing."""
        ...

    def add_labels(
        self, frame: int, labels: np.ndarray | LabelMap, *, source: str | None = None
    ) -> list[int]:
        """Annotate every object of an (H, W) label map on ``frame``; return the ids added."""
        ...

    def add_points(
        self,
        frame: int,
        obj_id: int,
        points: Sequence[Sequence[float]] | np.ndarray,
        labels: Sequence[int] | np.ndarray | None = None,
        *,
        box: Sequence[float] | None = None,
    ) -> PromptMask:
        """Annotate an object with (N, 2) clicks (x, y) and optionally an (x0, y0, x1, y1) box."""
        ...

    def add_target(self, obj_id: int, target: Target) -> None:
        """Search a saved target in every frame as object ``obj_id``."""
        ...

    def masks_on(self, frame: int) -> dict[int, np.ndarray]:
        """The prompted (H, W) bool masks of ``frame``, by object id."""
        ...

    def first_frames(self) -> dict[int, int]:
        """Per prompted object id, its first annotated frame."""
        ...

    def check_direction(self, direction: Direction) -> None:
        """Raise ValueError (one line) when the session cannot propagate in ``direction``."""
        ...

    def in_frame_order(self, direction: Direction) -> bool:
        """Whether :meth:`propagate` yields exactly one result per frame, in frame order (the
        outputs are then written as results come, with no second pass over the video)."""
        ...

    def expected_results(self, direction: Direction) -> int | None:
        """How many results :meth:`propagate` yields (None if the frame count is unknown)."""
        ...

    def propagate(self, direction: Direction = "both") -> Iterator[SessionResult]:
        """Track the objects; yield results in the order computed."""
        ...

    def run_record(self) -> dict[str, Any]:
        """What results.json records of the engine: ``engine`` (its name) and its settings."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Engine(Protocol):
    """A tracking engine: opens a session on one video's frames."""

    @property
    def name(self) -> str:
        """The engine's name, as results.json records it."""
        ...

    def record(self) -> dict[str, Any]:
        """What results.json records of the engine: ``engine`` (its name), ``config`` and
        its other settings (the same as its sessions' :meth:`TrackingSession.run_record`)."""
        ...

    def open_session(self, frames: Any) -> TrackingSession:
        """A new session over ``frames`` (:class:`~persam_video.io.seekable.SeekableFrames` or
        :class:`~persam_video.io.streamed.StreamedFrames`; closed with the session)."""
        ...

    def check_plan(self, frames: Sequence[int], direction: Direction, *, targets: bool) -> None:
        """Refuse in one line (ValueError), before any model work, a run this engine cannot
        track: prompts on ``frames``, propagated in ``direction``, with saved ``targets`` or
        not."""
        ...


@dataclass(frozen=True)
class PerSAMEngine:
    """PerSAM on a SAM v1-family model: the :class:`VideoTracker`'s per-frame cascade."""

    tracker: VideoTracker
    name: str = PERSAM_ENGINE

    def record(self) -> dict[str, Any]:
        return engine_record(self.tracker)

    def open_session(self, frames: Any) -> VideoSession:
        return VideoSession(self.tracker, frames)

    def check_plan(self, frames: Sequence[int], direction: Direction, *, targets: bool) -> None:
        """Keyframes need every prompt on one frame, tracked forward (:func:`check_keyframes`)."""
        check_keyframes(self.tracker.config, frames, direction, targets=targets)


def as_engine(engine: Engine | VideoTracker) -> Engine:
    """An engine, or a :class:`VideoTracker` as the PerSAM engine."""
    if isinstance(engine, VideoTracker):
        return PerSAMEngine(engine)
    return engine
