"""Find saved targets in one clip: the time spans where each is present, and the best frame of
each span as a thumbnail.

The tracker says, frame by frame, whether each target is present (the ``presence`` thresholds).
A *span* is a run of present frames, with hysteresis (:class:`SpanRules`): a gap of a few absent
frames inside a span is bridged, so one bad frame does not split it, and a run with too few
present frames is dropped, so a short blip is not a span (the rules: a frozen
:class:`~persam_video.config.SpanRules`, with the other settings). Spans are a pure function of
the per-frame presence (:func:`find_spans`); :class:`SpanBuilder` applies the rules online, as
frames arrive, so the best frame of each span (the highest ``score``) is kept without a second
pass.

:func:`find_in_clip` runs the tracker over a clip into a folder: ``results.json`` (per frame and
target, as ``track`` writes it), ``thumbnails/<target>-<start frame>.jpg`` (the best frame of
each span with the target's mask drawn over it) and, when asked, ``masks/``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Generic, TypeVar

import cv2
import numpy as np
from PIL import Image

from persam_video.apps import visualize
from persam_video.apps.track import (
    DEFAULT_FPS,
    OutputOptions,
    RunStatus,
    TrackSummary,
    track_to_folder,
)
from persam_video.atomic import (
    check_component,
    commit,
    discard,
    prepare_out_dir,
    remove_quietly,
    temp_path,
)
from persam_video.config import SpanRules
from persam_video.persam import Target
from persam_video.video import FrameResult, VideoTracker
from persam_video.video.engine import Engine

THUMBNAILS_DIR = "thumbnails"
#: Thumbnails are scaled down (never up) so that their longer side is at most this.
THUMBNAIL_MAX_SIDE = 320
THUMBNAIL_JPEG_QUALITY = 85
THUMBNAIL_NAME_FORMAT = "{target}-{start:05d}.jpg"
#: Object id the target is drawn with on its thumbnail (its colour in the DAVIS palette).
THUMBNAIL_OBJECT_ID = 1

T = TypeVar("T")


@dataclass(frozen=True)
class Span:
    """Where a target is present in a clip: frames ``start_frame`` .. ``end_frame`` (inclusive;
    both are present frames), and its best frame."""

    start_frame: int
    end_frame: int
    #: Timestamps (seconds) of the first and last frame, or None for a source without a clock.
    start_s: float | None
    end_s: float | None
    #: The present frame of the span with the highest score (the earliest of equal ones).
    best_frame: int
    best_score: float
    #: Frames of the span where the target was found (the others are bridged gaps).
    present_frames: int

    @property
    def frames(self) -> int:
        """Frames the span covers, bridged gaps included."""
        return self.end_frame - self.start_frame + 1

    def to_dict(self) -> dict[str, Any]:
        """The span as JSON-ready values (times rounded to the microsecond)."""
        record = asdict(self)
        for key in ("start_s", "end_s"):
            record[key] = None if record[key] is None else round(record[key], 6)
        record["best_score"] = round(self.best_score, 6)
        return record


@dataclass
class _OpenSpan(Generic[T]):
    start: int
    start_s: float | None
    last: int
    last_s: float | None
    best: int
    best_score: float
    present: int
    payload: T | None


class SpanBuilder(Generic[T]):
    """The spans of one target, built online: :meth:`push` each frame in order, then
    :meth:`finish`.

    Each push and :meth:`finish` return the spans they close, with the payload of their best
    frame: ``payload()`` is called only when a frame becomes its span's best so far (e.g. to
    copy the frame and mask for a thumbnail), so at most one payload per open span is kept.
    """

    def __init__(self, rules: SpanRules | None = None) -> None:
        self.rules = rules or SpanRules()
        self._open: _OpenSpan[T] | None = None
        self._last_index: int | None = None

    def push(
        self,
        index: int,
        time: float | None,
        present: bool,
        score: float,
        payload: Callable[[], T] | None = None,
    ) -> list[tuple[Span, T | None]]:
        """Add frame ``index`` (indices must increase); return the spans this closes."""
        if self._last_index is not None and index <= self._last_index:
            raise ValueError(f"frames must come in order: {index} after {self._last_index}")
        self._last_index = index
        closed = []
        span = self._open
        if span is not None and index - span.last - 1 > self.rules.max_gap:
            closed = self._close()
            span = None
        if not present:
            return closed
        if span is None:
            self._open = _OpenSpan(
                index, time, index, time, index, score, 1, payload() if payload else None
            )
            return closed
        span.last, span.last_s, span.present = index, time, span.present + 1
        if score > span.best_score:
            span.best, span.best_score = index, score
            span.payload = payload() if payload else None
        return closed

    def finish(self) -> list[tuple[Span, T | None]]:
        """End of the clip: close the open span, if any; return what it closes."""
        return self._close()

    def _close(self) -> list[tuple[Span, T | None]]:
        span, self._open = self._open, None
        if span is None or span.present < self.rules.min_frames:
            return []
        done = Span(
            span.start,
            span.last,
            span.start_s,
            span.last_s,
            span.best,
            float(span.best_score),
            span.present,
        )
        return [(done, span.payload)]


def find_spans(
    present: Sequence[bool],
    scores: Sequence[float] | None = None,
    times: Sequence[float | None] | None = None,
    rules: SpanRules | None = None,
) -> list[Span]:
    """The spans of one target from its per-frame presence (frame ``i`` is ``present[i]``).

    ``scores`` pick each span's best frame (default: all equal, so the first present frame);
    ``times`` are the frames' timestamps in seconds (default: None, no clock).
    """
    scores = [0.0] * len(present) if scores is None else scores
    times = [None] * len(present) if times is None else times
    if not len(present) == len(scores) == len(times):
        raise ValueError(
            f"need one score and time per frame: {len(present)} frames, {len(scores)} scores, "
            f"{len(times)} times"
        )
    builder: SpanBuilder[None] = SpanBuilder(rules)
    spans = []
    for index, (is_present, score, time) in enumerate(zip(present, scores, times, strict=True)):
        spans += [span for span, _ in builder.push(index, time, bool(is_present), float(score))]
    return spans + [span for span, _ in builder.finish()]


def thumbnail(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A frame with one object's mask drawn over it (colour and contour, as the overlay video
    draws it), scaled down to at most :data:`THUMBNAIL_MAX_SIDE` pixels: (h, w, 3) uint8 RGB."""
    labels = np.where(mask, THUMBNAIL_OBJECT_ID, 0).astype(np.uint8)
    image = visualize.overlay(frame, labels)
    height, width = image.shape[:2]
    scale = THUMBNAIL_MAX_SIDE / max(height, width)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image


@dataclass
class ClipSpans:
    """What :func:`find_in_clip` found: per target name, its spans and their thumbnails."""

    summary: TrackSummary
    #: Target name -> its spans in order, each :meth:`Span.to_dict` plus ``thumbnail`` (the
    #: thumbnail's path relative to the output folder).
    spans: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


class _SpanCollector:
    """A frame observer for :func:`track_to_folder`: builds each target's spans and writes the
    best frame of each closed span as a thumbnail into a temporary folder."""

    def __init__(self, names: list[str], rules: SpanRules, folder: Path) -> None:
        self.names = names
        self.folder = folder
        self.builders: list[SpanBuilder[tuple[np.ndarray, np.ndarray]]] = [
            SpanBuilder(rules) for _ in names
        ]
        self.spans: dict[str, list[dict[str, Any]]] = {name: [] for name in names}

    def observe(self, result: FrameResult) -> None:
        for builder, obj in zip(self.builders, result.objects, strict=True):
            best = functools.partial(_frame_and_mask, result, obj.obj_id)
            closed = builder.push(result.index, result.time, obj.present, obj.score, best)
            self._keep(obj.obj_id, closed)

    def finish(self) -> None:
        for obj_id, builder in enumerate(self.builders, start=1):
            self._keep(obj_id, builder.finish())

    def _keep(self, obj_id: int, closed: list[tuple[Span, Any]]) -> None:
        name = self.names[obj_id - 1]
        for span, payload in closed:
            file = THUMBNAIL_NAME_FORMAT.format(target=name, start=span.start_frame)
            frame, mask = payload
            self.folder.mkdir(exist_ok=True)
            Image.fromarray(thumbnail(frame, mask)).save(
                self.folder / file, quality=THUMBNAIL_JPEG_QUALITY
            )
            self.spans[name].append({**span.to_dict(), "thumbnail": f"{THUMBNAILS_DIR}/{file}"})


def _frame_and_mask(result: FrameResult, obj_id: int) -> tuple[np.ndarray, np.ndarray]:
    """A copy of a result's frame and one object's mask (kept for a thumbnail)."""
    return result.frame.copy(), result.labels == obj_id


def find_in_clip(
    tracker: Engine | VideoTracker,
    source: str | os.PathLike[str],
    targets: dict[str, Target],
    out_dir: str | os.PathLike[str],
    *,
    rules: SpanRules | None = None,
    save_masks: bool = False,
    fps: Fraction | None = None,
    progress: bool = False,
    metadata: dict[str, Any] | None = None,
) -> ClipSpans:
    """Find ``targets`` (name -> target; object ids 1..K in this order) in every frame of
    ``source`` and write ``results.json``, the thumbnails and (``save_masks``) the masks into
    ``out_dir``.

    A folder of frames is timed at ``fps`` (default 24 frames/s); a video file carries its own
    clock. The thumbnails move into place only when the whole clip was tracked: with any other
    :class:`~persam_video.apps.track.RunStatus` the result has no spans and no thumbnail is
    left.
    """
    names = [check_component(name, "target name") for name in targets]
    if not names:
        raise ValueError("give at least one target to find")
    rules = rules or SpanRules()
    is_folder = Path(source).is_dir()
    out = prepare_out_dir(out_dir)
    collector = _SpanCollector(names, rules, temp_path(out / THUMBNAILS_DIR, folder=True))
    try:
        summary = track_to_folder(
            tracker,
            source,
            None,
            out,
            targets=list(targets.values()),
            options=OutputOptions(save_masks=save_masks, overlay=False, report=False),
            progress=progress,
            fps=(fps or DEFAULT_FPS) if is_folder else None,
            metadata=metadata,
            on_frame=collector.observe,
        )
        if summary.status != RunStatus.COMPLETE:
            return ClipSpans(summary)
        collector.finish()
        if collector.folder.exists():
            commit([(collector.folder, out / THUMBNAILS_DIR)])
        else:
            remove_quietly(out / THUMBNAILS_DIR)  # an older run's thumbnails are not this one's
        return ClipSpans(summary, collector.spans)
    finally:
        discard(collector.folder)
