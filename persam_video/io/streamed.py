"""A streaming source seen as a tracking session's frames: read once, in order.

A tracking session (:class:`persam_video.video.session.VideoSession`) reads its frames through
``forward(start)``, ``read(index)`` and ``backward(...)``: what
:class:`~persam_video.io.seekable.SeekableFrames` gives for files, folders and sequences. When
every prompt is on the first frame and the objects are tracked forward, one pass in order is all
a session needs, and :class:`StreamedFrames` gives it over any :class:`FrameSource` (a video
decoded ahead in a thread, a generator of arrays), optionally a range of it (:func:`frame_range`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from persam_video.io.frame import Frame
from persam_video.io.reader import FrameSource

__all__ = ["StreamedFrames", "check_frame_range", "frame_range"]


def check_frame_range(start: int, max_frames: int | None) -> None:
    """Raise ValueError unless ``start >= 0`` and ``max_frames`` is None or ``>= 1``."""
    if start < 0 or (max_frames is not None and max_frames < 1):
        raise ValueError(f"start must be >= 0 and max_frames >= 1, got {start} and {max_frames}")


def frame_range(frames: Iterable[Frame], start: int, max_frames: int | None) -> Iterator[Frame]:
    """Frames ``start`` .. ``start + max_frames - 1`` of a source, renumbered from 0 with times
    from 0 (so the outputs begin with the first tracked frame).

    Raises:
        ValueError: ``start`` is past the last frame.
    """
    first_time, count, seen = None, 0, 0
    for frame in frames:
        seen += 1
        if frame.index < start:
            continue
        if max_frames is not None and count >= max_frames:
            return
        if first_time is None:
            first_time = frame.time
        shifted = None if frame.time is None else frame.time - (first_time or 0.0)
        yield Frame(index=frame.index - start, time=shifted, rgb=frame.rgb)
        count += 1
    if count == 0 and start > 0:
        raise ValueError(f"--start {start} is past the last frame (the input has {seen} frames)")


class StreamedFrames:
    """Frames ``start`` .. ``start + max_frames - 1`` of ``source``, renumbered from 0, for a
    session that reads them once, forward from frame 0.

    Attributes:
        source: the :class:`FrameSource` (its frame rate, time base and audio are the run's).
        size: (H, W) of the frames.
        num_frames: how many frames the range is expected to hold (None if unknown).
    """

    def __init__(self, source: FrameSource, start: int = 0, max_frames: int | None = None) -> None:
        check_frame_range(start, max_frames)
        self.source = source
        self.start = start
        self.max_frames = max_frames
        self.size = source.size
        total = source.num_frames
        if total is not None:
            # a start at or past the expected count: unknown (reading says how many there are)
            total = total - start if total > start else None
        if total is not None and max_frames is not None:
            total = min(total, max_frames)
        self.num_frames = total
        self._read = False

    def forward(self, start: int = 0) -> Iterator[Frame]:
        """The frames in order, once (``start`` must be 0)."""
        if start != 0 or self._read:
            raise ValueError(self._refusal("a second pass or a pass from a later frame"))
        self._read = True
        return frame_range(self.source, self.start, self.max_frames)

    def read(self, index: int) -> Frame:
        """Refused: a stream has no random access (clicks and boxes need their frame)."""
        raise ValueError(self._refusal(f"reading frame {index} for a click or a box"))

    def backward(self, start: int, stop: int = 0, **_: object) -> Iterator[Frame]:
        """Refused: a stream cannot be read backward."""
        raise ValueError(self._refusal("a backward pass"))

    def close(self) -> None:
        self.source.close()

    @staticmethod
    def _refusal(what: str) -> str:
        return (
            f"{what} needs random access to the frames; a streamed input is read once, forward "
            "(give a video file, a folder or a list of frames)"
        )
