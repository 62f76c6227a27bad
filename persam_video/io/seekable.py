"""Random access to the frames of a video file, a folder of frames or an in-memory sequence.

:func:`open_seekable` returns a :class:`SeekableFrames`: :meth:`~SeekableFrames.read` gives one
frame by index (0-based, decoding order, numbered as :func:`persam_video.io.open_source` numbers
them) and :meth:`~SeekableFrames.backward` walks frames from an index down to another in
reverse chunks of ``chunk`` frames, so a backward pass over a long video never holds more than
one chunk of decoded frames: peak memory does not depend on the video's length.

* Video files: decord's random access (``get_batch`` on a chunk of ascending indices, which
  seeks to the keyframe before the chunk and decodes forward to it); the chunk is then yielded
  last frame first. decord's traps (:mod:`persam_video.io._video_decode`) apply: ``torch`` is
  imported before decord, and ``len()`` counts packets, so it can exceed the decodable frames:
  a frame past the decodable ones is an error when it is read, said in one line. When decord
  cannot open the file, or fails on a chunk, PyAV reads it instead: the video packets' timestamps
  are demuxed once (no decoding; one integer per frame is kept, the only state that grows with
  the length) so that frame ``i`` is the ``i``-th presentation timestamp, and a chunk is decoded
  after seeking to the keyframe before its first frame.
* Folders: frame ``i`` is the ``i``-th image in natural name order (trivially random access).
* Sequences (a list of frames or a ``(T, H, W, 3)`` array): indexed directly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from persam_video.io._video_decode import (
    RGB_CHANNELS,
    RGB_FORMAT,
    _as_numpy,
    _frame_time,
    frames_claimed,
    import_decord,
    open_decord,
)
from persam_video.io.errors import VideoReadError
from persam_video.io.frame import Frame
from persam_video.io.orientation import display_turns
from persam_video.io.probe import (
    check_video_container,
    info_from_container,
    local_path,
    open_container,
)
from persam_video.io.reader import (
    _check_rgb,
    image_size_hw,
    list_images,
    open_source,
    parse_fps,
    read_image,
)

__all__ = ["DEFAULT_CHUNK", "SeekableFrames", "open_seekable"]

#: Frames decoded at once by :meth:`SeekableFrames.backward` (its peak memory, in frames).
DEFAULT_CHUNK = 16


class SeekableFrames:
    """Frames by index, and backward in chunks. Close it (or use ``with``) when done.

    Attributes:
        kind: ``"video"``, ``"folder"`` or ``"iterable"`` (a sequence).
        path: the file or folder, or None for a sequence.
        size: ``(H, W)`` of every frame.
        fps: exact frame rate of a video file, or the ``fps`` given (folders, sequences), or None.
        num_frames: frames the source claims: exact for folders and sequences, an estimate for
            video files (decord's packet count, which may exceed the decodable frames).
    """

    def __init__(
        self,
        *,
        kind: str,
        path: Path | None,
        size: tuple[int, int],
        fps: Fraction | None,
        num_frames: int | None,
    ) -> None:
        self.kind = kind
        self.path = path
        self.size = size
        self.fps = fps
        self.num_frames = num_frames

    # ------------------------------------------------------------------ to implement
    def _read_range(self, start: int, stop: int) -> list[Frame]:
        """Frames ``start .. stop - 1`` in ascending order (raise VideoReadError past the end)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the decoder."""

    # ------------------------------------------------------------------ shared
    def _beyond(self, index: int) -> VideoReadError:
        what = self.path if self.path is not None else "the frames"
        count = f"{self.num_frames} frames" if self.num_frames is not None else "fewer frames"
        return VideoReadError(f"frame {index} is beyond the video: {what} has {count}")

    def _check_index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
            raise VideoReadError(f"frame index {index!r}: expected an integer >= 0")
        if self.num_frames is not None and index >= self.num_frames:
            raise self._beyond(int(index))
        return int(index)

    def read(self, index: int) -> Frame:
        """Frame ``index`` (0-based, decoding order)."""
        index = self._check_index(index)
        (frame,) = self._read_range(index, index + 1)
        return frame

    def forward(self, start: int = 0) -> Iterator[Frame]:
        """Frames ``start``, ``start + 1``, ... to the end, streamed (as
        :func:`~persam_video.io.open_source` decodes them, frames before ``start`` included:
        a truncated file raises ``VideoDecodeError`` after its decodable frames)."""
        start = self._check_index(start)
        yield from self._stream(start)

    def _stream(self, start: int) -> Iterator[Frame]:
        with open_source(self.path, fps=self.fps if self.kind == "folder" else None) as frames:
            for frame in frames:
                if frame.index >= start:
                    yield frame

    def backward(self, start: int, stop: int = 0, *, chunk: int = DEFAULT_CHUNK) -> Iterator[Frame]:
        """Frames ``start, start - 1, ..., stop`` (both included), decoded ``chunk`` at a time."""
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        start = self._check_index(start)
        if stop < 0 or stop > start:
            raise ValueError(
                f"backward from frame {start} to frame {stop}: need 0 <= stop <= start"
            )
        high = start + 1
        while high > stop:
            low = max(stop, high - chunk)
            frames = self._read_range(low, high)
            yield from reversed(frames)
            del frames
            high = low

    def __enter__(self) -> SeekableFrames:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f" {self.path}" if self.path else ""
        return f"SeekableFrames({self.kind}{where}, size={self.size}, num_frames={self.num_frames})"


class _FolderFrames(SeekableFrames):
    def __init__(self, folder: Path, fps: Fraction | None) -> None:
        self._files = list_images(folder)
        if not self._files:
            raise VideoReadError(f"{folder}: folder has no image frames")
        size = image_size_hw(self._files[0])
        super().__init__(
            kind="folder", path=folder, size=size, fps=fps, num_frames=len(self._files)
        )

    def _read_range(self, start: int, stop: int) -> list[Frame]:
        return [
            Frame(
                i, float(i / self.fps) if self.fps else None, read_image(self._files[i], self.size)
            )
            for i in range(start, stop)
        ]


class _SequenceFrames(SeekableFrames):
    def __init__(self, frames: Sequence[np.ndarray] | np.ndarray, fps: Fraction | None) -> None:
        if len(frames) == 0:
            raise VideoReadError("the frame sequence is empty; expected (H, W, 3) uint8 frames")
        first = _check_rgb(0, frames[0], None)
        self._frames = frames
        super().__init__(
            kind="iterable", path=None, size=first.shape[:2], fps=fps, num_frames=len(frames)
        )

    def _read_range(self, start: int, stop: int) -> list[Frame]:
        return [
            Frame(
                i,
                float(i / self.fps) if self.fps else None,
                _check_rgb(i, self._frames[i], self.size),
            )
            for i in range(start, stop)
        ]

    def _stream(self, start: int) -> Iterator[Frame]:
        for index in range(start, len(self._frames)):
            yield self._read_range(index, index + 1)[0]


class _VideoFrames(SeekableFrames):
    """decord random access, PyAV (timestamp index + seek) where decord cannot."""

    def __init__(self, path: Path) -> None:
        container = open_container(path)
        try:
            check_video_container(container, path)
            self._info = info_from_container(container, path)
        finally:
            container.close()
        self._decord = open_decord(path, self._info)
        self._pts: list[int] | None = None  # PyAV's index, built when first needed
        super().__init__(
            kind="video",
            path=path,
            size=self._info.size_hw,
            fps=self._info.fps,
            # What random access reaches: decord's packets (the container's own estimate
            # can be a duration times an average rate), else the stream's claim until PyAV's
            # timestamp index makes it exact.
            num_frames=len(self._decord)
            if self._decord is not None
            else frames_claimed(self._info, None),
        )

    def close(self) -> None:
        self._decord = None

    def _read_range(self, start: int, stop: int) -> list[Frame]:
        if self._decord is not None:
            decord = import_decord()
            try:
                return self._decord_range(start, stop)
            except (decord.DECORDError, IndexError):
                self._decord = None  # decord cannot go on with this file: PyAV from here
        return self._pyav_range(start, stop)

    def _decord_range(self, start: int, stop: int) -> list[Frame]:
        reader = self._decord
        if stop > len(reader):
            raise self._beyond(stop - 1)
        decord = import_decord()
        batch = _as_numpy(reader.get_batch(list(range(start, stop))))
        if batch.shape[1:] != (*self._info.size_hw, RGB_CHANNELS):  # as the stream checks
            raise decord.DECORDError(f"frames of shape {batch.shape[1:]}")
        frames = []
        for offset, index in enumerate(range(start, stop)):
            seconds, _ = reader.get_frame_timestamp(index)
            time = _frame_time(seconds, index, self._info)
            frames.append(Frame(index, time, np.ascontiguousarray(batch[offset])))
        return frames

    def _pyav_index(self, container: av.container.InputContainer) -> list[int]:
        """Presentation timestamps of the video packets, sorted: frame i starts at pts[i]."""
        if self._pts is None:
            stream = container.streams.video[0]
            self._pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None)
            container.seek(0, stream=stream)
        return self._pts

    def _pyav_range(self, start: int, stop: int) -> list[Frame]:
        container = av.open(local_path(self.path))
        try:
            stream = container.streams.video[0]
            stream.thread_type = "SLICE"
            pts = self._pyav_index(container)
            if stop > len(pts):
                raise self._beyond(stop - 1)
            self.num_frames = len(pts)
            origin = stream.start_time or 0
            turns = display_turns(self._info.rotation)
            container.seek(pts[start], stream=stream, backward=True, any_frame=False)
            wanted = {value: start + i for i, value in enumerate(pts[start:stop])}
            frames: dict[int, Frame] = {}
            for decoded in container.decode(stream):
                if decoded.pts in wanted:
                    index = wanted[decoded.pts]
                    time = float((decoded.pts - origin) * stream.time_base)
                    rgb = decoded.to_ndarray(format=RGB_FORMAT)
                    if turns:  # PyAV decodes the stored orientation (as _video_decode)
                        rgb = np.rot90(rgb, turns)
                    frames[index] = Frame(index, time, np.ascontiguousarray(rgb))
                if decoded.pts is not None and decoded.pts >= pts[stop - 1]:
                    break
        except av.FFmpegError as error:
            raise VideoReadError(
                f"{self.path}: cannot decode frames {start}..{stop - 1} ({type(error).__name__})"
            ) from None
        finally:
            container.close()
        missing = [i for i in range(start, stop) if i not in frames]
        if missing:
            raise VideoReadError(f"{self.path}: frame {missing[0]} cannot be decoded")
        return [frames[i] for i in range(start, stop)]


def open_seekable(
    source: str | os.PathLike[str] | Sequence[np.ndarray] | np.ndarray,
    *,
    fps: Fraction | int | float | str | None = None,
) -> SeekableFrames:
    """Open a video file, a folder of frames or a sequence of (H, W, 3) uint8 RGB frames for
    random access (see the module's docstring).

    Raises:
        VideoReadError: missing path, not a video, empty folder or sequence.
    """
    rate = parse_fps(fps)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            return _FolderFrames(path, rate)
        if rate is not None:
            raise VideoReadError(f"{path}: a frame rate applies to folders of frames only")
        return _VideoFrames(path)
    if isinstance(source, np.ndarray) or isinstance(source, Sequence):
        return _SequenceFrames(source, rate)
    raise VideoReadError(
        f"source of type {type(source).__name__} has no random access; give a video path, a "
        "folder of frames, or a list or array of frames"
    )
