"""Streaming frame sources: video files, folders of images, and in-memory iterables.

``open_source`` returns a :class:`FrameSource`, a single-pass iterator of
:class:`~persam_video.io.frame.Frame` objects that never holds more than ``prefetch``
decoded frames: memory does not grow with the length of the video.

* Video files (anything FFmpeg demuxes: mp4, mov, avi, mkv, webm, ...) are probed with PyAV
  (exact frame rate as a ``Fraction``, audio presence) and decoded with decord; see
  :mod:`persam_video.io._video_decode` for decord's traps and the rule that tells a
  truncated or corrupt file (``VideoDecodeError``) from a container that merely over-counts.
* Folders of ``.jpg/.jpeg/.png/.bmp/.webp`` frames (e.g. DAVIS ``JPEGImages/480p/<seq>``) are
  read in natural name order (``2.jpg`` before ``10.jpg``); hidden files are ignored.
* Any other iterable of ``(H, W, 3)`` ``uint8`` RGB arrays (a webcam loop, frames decoded by
  the caller, a ``(T, H, W, 3)`` array) is wrapped as it is.

With ``prefetch > 0`` frames are produced by a background thread into a bounded queue; an
exception raised while producing frame ``i`` is re-raised by ``next()`` right after frame
``i - 1`` was returned. ``close()`` (or leaving the ``with`` block, or exhausting the
source) stops the thread and releases the decoder.
"""

from __future__ import annotations

import os
import queue
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from persam_video.io._video_decode import decode_video, frames_claimed, open_decord
from persam_video.io.errors import VideoDecodeError, VideoReadError
from persam_video.io.frame import Frame
from persam_video.io.orientation import upright, upright_size_hw
from persam_video.io.probe import check_video_container, info_from_container, open_container

__all__ = ["Frame", "FrameSource", "SourceKind", "open_source"]

SourceKind = Literal["video", "folder", "iterable"]
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
DEFAULT_PREFETCH = 4
#: Frame rates a folder of frames may be given (MP4's 32-bit time scale fails below ~1e-5).
MIN_FPS, MAX_FPS = Fraction(1, 1000), Fraction(1000)
#: Longest ``fps`` quoted back in an error (characters).
MAX_SHOWN_FPS = 40
STOP_POLL_SECONDS = 0.1  # how often a blocked producer thread checks for close()
RGB_CHANNELS = 3
_DIGITS = re.compile(r"(\d+)")
_END = object()


class _Failure:
    """An exception raised by the producer, carried through the queue to the consumer."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def natural_key(name: str) -> tuple[list[tuple[int, int, str]], str]:
    """Sort key that orders embedded numbers numerically: ``2.jpg`` < ``10.jpg``.

    The name itself breaks ties (``1.jpg`` / ``01.jpg``), so the order never depends on the
    file system's listing order.
    """
    parts = [
        (0, int(part), "") if part.isdigit() else (1, 0, part.lower())
        for part in _DIGITS.split(name)
    ]
    return parts, name


def _produce(frames: Iterator[Frame], out: queue.Queue, stop: threading.Event) -> None:
    """Producer thread body: move frames into ``out`` until exhausted, failed or stopped."""

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=STOP_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    try:
        for frame in frames:
            if not put(frame):
                return
        put(_END)
    except BaseException as error:  # re-raised in the consumer thread
        put(_Failure(error))
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()


class FrameSource:
    """Single-pass iterator of :class:`Frame` objects; also a context manager.

    Attributes:
        kind: ``"video"``, ``"folder"`` or ``"iterable"``.
        path: the file or folder read, or None for an iterable.
        size: ``(H, W)`` of every frame.
        fps: exact frame rate (``Fraction``) of a video file (PyAV's ``average_rate``, else
            ``guessed_rate``; never decord's float), or the ``fps`` given to
            :func:`open_source`, or None.
        time_base: time base of the video stream's timestamps, ``1 / fps`` for folders and
            iterables with a frame rate, else None.
        num_frames: expected number of frames, or None if unknown. For video files it is an
            estimate from the container (a truncated file yields fewer; see
            ``VideoDecodeError``); exact for folders.
        has_audio: whether the video file has an audio stream (always False otherwise).
    """

    def __init__(
        self,
        frames: Iterator[Frame],
        *,
        kind: SourceKind,
        path: Path | None,
        size: tuple[int, int],
        fps: Fraction | None,
        time_base: Fraction | None,
        num_frames: int | None,
        has_audio: bool,
        prefetch: int,
    ) -> None:
        self.kind: SourceKind = kind
        self.path = path
        self.size = size
        self.fps = fps
        self.time_base = time_base
        self.num_frames = num_frames
        self.has_audio = has_audio
        self._frames = frames
        self._closed = False
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        if prefetch > 0:
            self._queue = queue.Queue(maxsize=prefetch)
            self._thread = threading.Thread(
                target=_produce,
                args=(frames, self._queue, self._stop),
                name=f"persam-frames-{kind}",
                daemon=True,
            )
            # A source dropped without close() must not leave its thread blocked forever.
            weakref.finalize(self, self._stop.set)
            self._thread.start()

    def __iter__(self) -> FrameSource:
        return self

    def __next__(self) -> Frame:
        if self._closed:
            raise StopIteration
        if self._queue is None:
            try:
                return next(self._frames)
            except BaseException:
                self.close()
                raise
        item = self._queue.get()
        if isinstance(item, Frame):
            return item
        self.close()
        if isinstance(item, _Failure):
            raise item.error
        raise StopIteration

    def close(self) -> None:
        """Stop decoding and release the decoder; further iteration yields nothing."""
        if self._closed:
            return
        self._closed = True
        if self._thread is None:
            close = getattr(self._frames, "close", None)
            if close is not None:
                close()
            return
        self._stop.set()
        while self._thread.is_alive():
            try:  # unblock a producer waiting on a full queue
                self._queue.get(timeout=STOP_POLL_SECONDS)
            except queue.Empty:
                pass
        self._thread.join()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f" {self.path}" if self.path else ""
        return (
            f"FrameSource({self.kind}{where}, size={self.size}, fps={self.fps}, "
            f"num_frames={self.num_frames})"
        )


def _open_video(path: Path, fps: Fraction | None, prefetch: int) -> FrameSource:
    if fps is not None:
        raise VideoReadError(
            f"{path}: a frame rate (--fps) applies to folders of frames only; a video file has its "
            "own"
        )
    container = open_container(path)
    try:
        check_video_container(container, path)
        info = info_from_container(container, path)
    finally:
        container.close()
    reader = open_decord(path, info)
    return FrameSource(
        decode_video(path, info, reader),
        kind="video",
        path=path,
        size=info.size_hw,
        fps=info.fps,
        time_base=info.time_base,
        num_frames=frames_claimed(info, reader),
        has_audio=info.has_audio,
        prefetch=prefetch,
    )


def image_size_hw(path: Path) -> tuple[int, int]:
    """``(height, width)`` of an image file, upright, from its header (VideoReadError if it
    is not an image)."""
    try:
        with Image.open(path) as image:
            return upright_size_hw(image)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise VideoReadError(f"{path}: cannot read image frame ({error})") from None


def read_image(path: str | os.PathLike[str], size: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB, upright (its EXIF orientation applied);
    with ``size``, check it is (H, W) = size.

    Raises:
        VideoReadError: the file is missing or not an image, or has another size.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            rgb = _to_rgb8(upright(image))
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise VideoReadError(f"{path}: cannot read image ({error})") from None
    if size is not None and rgb.shape[:2] != size:
        raise VideoReadError(f"{path}: frame is {rgb.shape[:2]}, expected {size} (H, W)")
    return np.ascontiguousarray(rgb)


#: PIL modes of one channel with more than 8 bits (16-bit PNGs, 32-bit integer or float).
_WIDE_GRAY_MODES = ("I;16", "I;16B", "I;16L", "I")
#: Largest value of a 16-bit sample, and of an 8-bit one.
_MAX_16, _MAX_8 = 65535, 255


def _to_rgb8(image: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an opened image. 16-bit gray is scaled to 8 bits (PIL's own
    conversion clips it, turning most 16-bit frames white); other modes as PIL converts them."""
    if image.mode in _WIDE_GRAY_MODES:
        values = np.asarray(image, dtype=np.float64)
        gray = np.clip(np.round(values * (_MAX_8 / _MAX_16)), 0, _MAX_8).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode.startswith("RGB") and "16" in image.mode:  # wide colour: scale the same way
        values = np.asarray(image, dtype=np.float64)[..., :3]
        return np.clip(np.round(values * (_MAX_8 / _MAX_16)), 0, _MAX_8).astype(np.uint8)
    return np.asarray(image.convert("RGB"))


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files of ``folder`` (jpg, png, ...; hidden files skipped), in natural name order."""
    return sorted(
        (
            entry
            for entry in Path(folder).iterdir()
            if entry.suffix.lower() in IMAGE_EXTENSIONS
            and not entry.name.startswith(".")
            and entry.is_file()
        ),
        key=lambda entry: natural_key(entry.name),
    )


def _folder_frames(
    files: list[Path], size: tuple[int, int], fps: Fraction | None
) -> Iterator[Frame]:
    """Frames of a folder; a frame that cannot be read ends the source with a
    ``VideoDecodeError`` after the frames before it (as a damaged video file does)."""
    for index, file in enumerate(files):
        time = float(index / fps) if fps else None
        try:
            rgb = read_image(file, size)
        except VideoReadError as error:
            raise VideoDecodeError(file.parent, index, str(error)) from None
        yield Frame(index, time, rgb)


def _open_folder(folder: Path, fps: Fraction | None, prefetch: int) -> FrameSource:
    files = list_images(folder)
    if not files:
        extensions = "/".join(sorted(ext[1:] for ext in IMAGE_EXTENSIONS))
        raise VideoReadError(f"{folder}: folder has no image frames ({extensions})")
    size = image_size_hw(files[0])
    for file in files[1:]:
        other = image_size_hw(file)
        if other != size:
            raise VideoReadError(
                f"{file}: frame is {other} (H, W) but {files[0].name} is {size}; "
                "all frames in a folder must have the same size"
            )
    return FrameSource(
        _folder_frames(files, size, fps),
        kind="folder",
        path=folder,
        size=size,
        fps=fps,
        time_base=1 / fps if fps else None,
        num_frames=len(files),
        has_audio=False,
        prefetch=prefetch,
    )


def _check_rgb(index: int, array: object, size: tuple[int, int] | None) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise VideoReadError(f"frame {index}: got {type(array).__name__}; expected a numpy array")
    if array.ndim != 3 or array.shape[2] != RGB_CHANNELS or array.dtype != np.uint8:
        raise VideoReadError(
            f"frame {index}: got {array.dtype} array of shape {array.shape}; "
            "expected (H, W, 3) uint8 RGB"
        )
    if size is not None and array.shape[:2] != size:
        raise VideoReadError(
            f"frame {index}: size {array.shape[:2]} differs from the first frame's {size}"
        )
    return np.ascontiguousarray(array)


def _iterable_frames(
    first: np.ndarray, rest: Iterator[object], size: tuple[int, int], fps: Fraction | None
) -> Iterator[Frame]:
    def time(index: int) -> float | None:
        return float(index / fps) if fps else None

    yield Frame(0, time(0), first)
    try:
        for index, array in enumerate(rest, start=1):
            yield Frame(index, time(index), _check_rgb(index, array, size))
    finally:
        close: Callable[[], object] | None = getattr(rest, "close", None)
        if close is not None:
            close()


def _open_iterable(frames: Iterable[object], fps: Fraction | None, prefetch: int) -> FrameSource:
    iterator = iter(frames)
    try:
        first = next(iterator)
    except StopIteration:
        raise VideoReadError("frame iterable is empty; expected (H, W, 3) uint8 frames") from None
    first = _check_rgb(0, first, None)
    size = (first.shape[0], first.shape[1])
    return FrameSource(
        _iterable_frames(first, iterator, size, fps),
        kind="iterable",
        path=None,
        size=size,
        fps=fps,
        time_base=1 / fps if fps else None,
        num_frames=len(frames) if hasattr(frames, "__len__") else None,
        has_audio=False,
        prefetch=prefetch,
    )


def parse_fps(fps: Fraction | int | float | str | None) -> Fraction | None:
    """A frame rate given as a number, a ``Fraction`` or a string (``"30000/1001"``), checked
    to lie in the range the writers can time; None stays None. Raises ``VideoReadError``."""
    if fps is None:
        return None
    shown = repr(fps) if len(repr(fps)) <= MAX_SHOWN_FPS else f"{repr(fps)[:MAX_SHOWN_FPS]}..."
    try:
        rate = Fraction(fps)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):  # "abc", "1/0", inf
        raise VideoReadError(f"fps={shown}; expected a positive number or Fraction") from None
    if rate <= 0:
        raise VideoReadError(f"fps={shown}; expected a positive number or Fraction")
    if not MIN_FPS <= rate <= MAX_FPS:
        raise VideoReadError(
            f"fps={shown}; expected a frame rate from {MIN_FPS} to {MAX_FPS} frames per second "
            "(the output videos cannot time frames outside that range)"
        )
    return rate.limit_denominator() if isinstance(fps, float) else rate


def open_source(
    source: str | os.PathLike[str] | Iterable[np.ndarray],
    *,
    fps: Fraction | int | float | str | None = None,
    prefetch: int = DEFAULT_PREFETCH,
) -> FrameSource:
    """Open a video file, a folder of image frames, or an iterable of RGB frames.

    Args:
        source: path of a video file or of a folder of frames, or an iterable of ``(H, W, 3)``
            ``uint8`` RGB arrays. An iterable's first frame is read here (to learn the size).
        fps: frame rate of a folder or iterable (e.g. ``Fraction(30000, 1001)`` or ``24``);
            frame ``i`` then has ``time = i / fps``. Without it frames have ``time=None``.
            Not allowed for video files, which carry their own timestamps.
        prefetch: frames decoded ahead in a background thread; ``0`` decodes in the caller's
            thread.

    Returns:
        An open :class:`FrameSource`; close it (or use ``with``) when done.

    Raises:
        VideoReadError: missing path, not a video, empty folder, frames of different sizes,
            invalid first frame of an iterable. Invalid later frames raise while iterating.
    """
    if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
        raise VideoReadError(f"prefetch={prefetch!r}; expected an integer >= 0")
    rate = parse_fps(fps)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            return _open_folder(path, rate, prefetch)
        return _open_video(path, rate, prefetch)
    if isinstance(source, (bytes, bytearray)) or not isinstance(source, Iterable):
        raise VideoReadError(
            f"source of type {type(source).__name__}; expected a video path, a folder of "
            "frames, or an iterable of (H, W, 3) uint8 arrays"
        )
    return _open_iterable(source, rate, prefetch)
