"""Video output with PyAV: background encoding, exact frame rates, audio copy, atomic files.

* Frames are encoded in a background thread fed by a bounded queue, so the caller (the
  segmentation model) and the encoder overlap. An error in the encoder thread is raised by
  the next :meth:`VideoWriter.write` or by :meth:`VideoWriter.close`.
* The frame rate is handed to FFmpeg as the exact ``Fraction`` (``30000/1001`` stays
  ``30000/1001``). Frames given a ``time`` keep it (variable-frame-rate inputs keep their
  timestamps); frames without one are spaced ``1 / fps`` apart.
* ``audio_from=`` copies the first audio stream of another file (the input video) into the
  output without re-encoding, aligned with the video's start and cut at the video's end.
* Outputs are atomic: everything is written to a hidden ``.<name>.partial-<pid><ext>`` file
  in the destination folder, moved into place by ``close()`` and deleted by ``abort()``.
* Odd sizes: ``yuv420p`` (and any chroma-subsampled pixel format) needs even dimensions, so
  frames of odd height/width are padded by one row/column that repeats the edge pixels
  (bottom/right). Padding keeps every input pixel and the top-left alignment with masks;
  cropping would drop data and scaling would blur mask edges. ``output_size_hw`` says what
  was written.
* Transparency: :class:`AlphaVideoWriter` writes RGBA frames as PNG-in-MOV (``.mov``,
  lossless ``png`` codec, ``rgba``): every FFmpeg-based tool and the common editors decode
  its alpha. VP9 with alpha (``.webm``, ``yuva420p``) is offered too and round-trips in the
  bundled FFmpeg, but only through the ``libvpx-vp9`` *decoder*; FFmpeg's default VP9
  decoder (and decord) silently drop the alpha, so it is not the default.
"""

from __future__ import annotations

import math
import os
import queue
import threading
from collections.abc import Iterator, Mapping
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from persam_video.atomic import discard, place, temp_path
from persam_video.io.errors import VideoWriteError
from persam_video.io.probe import VideoInfo, open_container, probe

__all__ = ["AlphaVideoWriter", "VideoInfo", "VideoWriter", "probe"]

DEFAULT_CODEC = "libx264"
DEFAULT_PIX_FMT = "yuv420p"
DEFAULT_CRF = 18  # visually near-lossless for x264; lower is better quality, larger files
DEFAULT_PRESET = "medium"
DEFAULT_QUEUE_SIZE = 8
# Default time base: 1 / lcm(fps numerator, this). Exact for every frame of a constant-rate
# grid (24, 25, 30000/1001, 60000/1001, ...) and at least millisecond resolution for times.
MIN_TIME_BASE_RATE = 1000
PUT_POLL_SECONDS = 0.1
RGB_CHANNELS = 3
RGBA_CHANNELS = 4
_CHROMA_PROBE_SIZE = 64  # any even size works to read a pixel format's chroma subsampling
_X26X_CODECS = frozenset({"libx264", "libx265"})
_VP9_CODEC = "libvpx-vp9"
_FINISH = object()
_ABORT = object()

ALPHA_FORMATS: Mapping[str, tuple[str, str]] = {
    ".mov": ("png", "rgba"),
    ".webm": (_VP9_CODEC, "yuva420p"),
}


def _encoder_options(codec: str, crf: int) -> dict[str, str]:
    if codec in _X26X_CODECS:
        return {"crf": str(crf), "preset": DEFAULT_PRESET}
    if codec == _VP9_CODEC:
        return {"crf": str(crf), "b": "0"}  # b=0: constant-quality mode
    return {}


def _subsampling(pix_fmt: str) -> tuple[int, int]:
    """(vertical, horizontal) factor that height and width must be multiples of."""
    try:
        fmt = av.video.format.VideoFormat(pix_fmt, _CHROMA_PROBE_SIZE, _CHROMA_PROBE_SIZE)
    except ValueError:
        raise ValueError(f"unknown pix_fmt {pix_fmt!r}; expected e.g. 'yuv420p'") from None
    if len(fmt.components) < 3 or fmt.is_rgb:
        return 1, 1
    return (
        _CHROMA_PROBE_SIZE // fmt.chroma_height(),
        _CHROMA_PROBE_SIZE // fmt.chroma_width(),
    )


def _pad_to(array: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Copy of ``array`` grown to ``size_hw`` by repeating its bottom row / right column."""
    extra_h = size_hw[0] - array.shape[0]
    extra_w = size_hw[1] - array.shape[1]
    if extra_h == 0 and extra_w == 0:
        return np.array(array, dtype=np.uint8, order="C", copy=True)
    return np.pad(array, ((0, extra_h), (0, extra_w), (0, 0)), mode="edge")


def _default_time_base(fps: Fraction) -> Fraction:
    return Fraction(1, math.lcm(fps.numerator, MIN_TIME_BASE_RATE))


class _AudioCopy:
    """Remuxes the audio packets of ``source`` into ``output`` as the video advances."""

    def __init__(self, source: Path, output: av.container.OutputContainer) -> None:
        self._input = open_container(source)
        self.stream = None
        try:
            streams = self._input.streams
            if not streams.audio:
                return
            in_stream = streams.audio[0]
            name = in_stream.codec_context.name
            if name not in output.supported_codecs:
                raise ValueError(
                    f"cannot copy {name} audio from {source} into {output.name} without "
                    "re-encoding; choose another output container (e.g. .mkv) or no audio"
                )
            self.stream = output.add_stream_from_template(in_stream)
        except BaseException:
            self._input.close()
            raise
        self._time_base = in_stream.time_base
        video_start = streams.video[0].start_time if streams.video else None
        if video_start is not None:  # the reader's times are relative to the video start
            offset = video_start * streams.video[0].time_base
            self._shift = round(offset / self._time_base)
        else:
            self._shift = 0
        self._packets: Iterator[av.Packet] = (
            packet for packet in self._input.demux(in_stream) if packet.dts is not None
        )
        self._pending: av.Packet | None = None
        self._output = output

    def mux_until(self, seconds: float) -> None:
        """Mux the packets that start before ``seconds`` (output time)."""
        if self.stream is None:
            return
        while True:
            packet = self._pending if self._pending is not None else next(self._packets, None)
            self._pending = None
            if packet is None:
                return
            start = packet.pts if packet.pts is not None else packet.dts
            if float((start - self._shift) * self._time_base) >= seconds:
                self._pending = packet
                return
            if self._shift:
                packet.dts -= self._shift
                if packet.pts is not None:
                    packet.pts -= self._shift
            packet.stream = self.stream
            self._output.mux(packet)

    def close(self) -> None:
        self._input.close()


class VideoWriter:
    """Encode RGB frames into a video file in a background thread; atomic on success.

    Use as a context manager: leaving the block normally calls :meth:`close` (the file
    appears at ``path``); an exception calls :meth:`abort` (nothing appears).

    Args:
        path: output file; the extension picks the container (``.mp4``, ``.mov``, ``.mkv``,
            ``.webm``, ...). Its folder must exist.
        fps: frame rate, exact (``Fraction(30000, 1001)``, ``25``, ``"24000/1001"``).
        size_hw: ``(H, W)`` of the frames that will be written.
        time_base: time base of output timestamps. Pass the input's
            (``FrameSource.time_base``) to keep variable-frame-rate timestamps tick-exact;
            default ``1 / lcm(fps.numerator, 1000)``.
        audio_from: file whose first audio stream is copied (not re-encoded); nothing is
            copied if it has no audio.
        codec: FFmpeg encoder name.
        crf: constant rate factor for x264/x265/VP9 (ignored by other encoders).
        pix_fmt: encoded pixel format; chroma-subsampled formats get even padding.
        queue_size: frames buffered between :meth:`write` and the encoder thread.
        options: extra encoder options (FFmpeg ``-opt value`` pairs), override defaults.

    Attributes:
        output_size_hw: ``(H, W)`` actually encoded (``size_hw`` plus padding).
        frames_written: number of frames accepted by :meth:`write`.
        has_audio: whether an audio stream is being copied.
    """

    _channels = RGB_CHANNELS
    _input_format = "rgb24"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fps: Fraction | int | str,
        size_hw: tuple[int, int],
        time_base: Fraction | None = None,
        audio_from: str | os.PathLike[str] | None = None,
        codec: str = DEFAULT_CODEC,
        crf: int = DEFAULT_CRF,
        pix_fmt: str = DEFAULT_PIX_FMT,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        options: Mapping[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.fps = self._check_fps(fps)
        self.size_hw = self._check_size(size_hw)
        self.time_base = Fraction(time_base) if time_base else _default_time_base(self.fps)
        if self.time_base <= 0:
            raise ValueError(f"time_base={time_base!r}; expected a positive Fraction")
        if queue_size < 1:
            raise ValueError(f"queue_size={queue_size!r}; expected an integer >= 1")
        if not self.path.parent.is_dir():
            raise ValueError(f"{self.path}: output folder {self.path.parent} does not exist")
        step_h, step_w = _subsampling(pix_fmt)
        self.output_size_hw = (
            -(-self.size_hw[0] // step_h) * step_h,
            -(-self.size_hw[1] // step_w) * step_w,
        )
        self._partial = temp_path(self.path)
        try:
            self._container = self._open_output(codec, pix_fmt, crf, options)
        except BaseException:
            discard(self._partial)
            raise
        self._audio: _AudioCopy | None = None
        try:
            if audio_from is not None:
                self._audio = _AudioCopy(Path(audio_from), self._container)
        except BaseException:
            self._container.close()
            discard(self._partial)
            raise
        self.has_audio = self._audio is not None and self._audio.stream is not None
        self.frames_written = 0
        self._last_pts: int | None = None
        self._last_time: float | None = None
        self._end_pts = 0
        self._error: BaseException | None = None
        self._error_frame = 0
        self._state = "open"
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._run, name="persam-encoder", daemon=True)
        self._thread.start()

    @staticmethod
    def _check_fps(fps: Fraction | int | str) -> Fraction:
        try:
            rate = Fraction(fps)
        except (TypeError, ValueError):
            rate = Fraction(0)
        if rate <= 0 or isinstance(fps, float):
            raise ValueError(
                f"fps={fps!r}; expected a positive int, Fraction or 'num/den' string "
                "(floats lose exactness: use Fraction(30000, 1001) for 29.97)"
            )
        return rate

    @staticmethod
    def _check_size(size_hw: tuple[int, int]) -> tuple[int, int]:
        try:
            height, width = (int(v) for v in size_hw)
        except (TypeError, ValueError):
            height = width = 0
        if height <= 0 or width <= 0:
            raise ValueError(f"size_hw={size_hw!r}; expected (height, width) > 0")
        return height, width

    def _open_output(
        self, codec: str, pix_fmt: str, crf: int, options: Mapping[str, str] | None
    ) -> av.container.OutputContainer:
        try:
            container = av.open(str(self._partial), mode="w")
        except ValueError:
            raise ValueError(
                f"{self.path}: cannot tell the container format from the extension "
                f"{self.path.suffix!r}; expected e.g. .mp4, .mov, .mkv or .webm"
            ) from None
        try:
            stream = container.add_stream(codec, rate=self.fps)
            stream.height, stream.width = self.output_size_hw
            stream.pix_fmt = pix_fmt
            stream.codec_context.time_base = self.time_base
            stream.options = {**_encoder_options(codec, crf), **(options or {})}
        except (ValueError, av.FFmpegError) as error:
            container.close()
            discard(self._partial)
            raise ValueError(f"{self.path}: cannot set up encoder {codec!r}: {error}") from None
        self._stream = stream
        return container

    # -- caller side -------------------------------------------------------------------

    def _next_pts(self, time: float | None) -> int:
        if time is None:
            pts = round(Fraction(self.frames_written) / (self.fps * self.time_base))
            if self._last_pts is not None and pts <= self._last_pts:
                pts = self._last_pts + max(1, round(1 / (self.fps * self.time_base)))
            return pts
        if not math.isfinite(time) or time < 0:
            raise ValueError(f"frame time {time!r}; expected seconds >= 0")
        if self._last_time is not None and time <= self._last_time:
            raise ValueError(
                f"frame time {time} does not come after the previous frame's {self._last_time}"
            )
        pts = round(Fraction(time) / self.time_base)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1  # two times closer than one tick of the time base
        return pts

    def _check_frame(self, frame: np.ndarray) -> np.ndarray:
        array = np.asarray(frame)
        expected = (*self.size_hw, self._channels)
        if array.shape != expected or array.dtype != np.uint8:
            kind = "RGBA" if self._channels == RGBA_CHANNELS else "RGB"
            raise ValueError(
                f"frame of {array.dtype} {array.shape}; expected uint8 {kind} of shape {expected}"
            )
        return array

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise VideoWriteError(
                f"{self.path}: encoding failed at frame {self._error_frame}: {self._error}"
            ) from self._error

    def write(self, frame: np.ndarray, time: float | None = None) -> None:
        """Queue one frame for encoding (copied, so the caller may reuse its buffer).

        Args:
            frame: ``(H, W, 3)`` ``uint8`` RGB (``(H, W, 4)`` RGBA for AlphaVideoWriter).
            time: presentation time in seconds (e.g. ``Frame.time``); must increase from
                frame to frame. None places the frame ``1 / fps`` after the previous one.

        Raises:
            ValueError: wrong shape/dtype, non-increasing time, or writer already closed.
            VideoWriteError: the encoder thread failed on an earlier frame.
        """
        if self._state != "open":
            raise ValueError(f"{self.path}: writer is {self._state}; cannot write more frames")
        self._raise_pending()
        array = self._check_frame(frame)
        pts = self._next_pts(time)
        item = (_pad_to(array, self.output_size_hw), pts, self.frames_written)
        self._put(item)
        self._last_pts = pts
        if time is not None:
            self._last_time = time
        self._end_pts = pts + max(1, round(1 / (self.fps * self.time_base)))
        self.frames_written += 1

    def _put(self, item: object) -> None:
        while True:
            try:
                self._queue.put(item, timeout=PUT_POLL_SECONDS)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    raise VideoWriteError(f"{self.path}: encoder thread stopped") from None

    @property
    def temporary(self) -> Path:
        """Where the file is written until it is moved to ``path``."""
        return self._partial

    def close(self, *, move: bool = True) -> Path:
        """Finish encoding, flush, and move the file to ``path``; return where it is.

        With ``move=False`` the finished file stays at :attr:`temporary` for the caller to
        move (with the run's other outputs, see :func:`persam_video.atomic.commit`).

        Raises:
            VideoWriteError: encoding failed (no file is left), or no frame was written.
        """
        if self._state != "open":
            return self.path if self._state == "closed" else self._partial
        self._state = "closed" if move else "finished"
        self._put(_FINISH)
        self._thread.join()
        if self._error is None and self.frames_written == 0:
            discard(self._partial)
            raise VideoWriteError(f"{self.path}: no frames were written; nothing was saved")
        if self._error is not None:
            discard(self._partial)
            self._raise_pending()
        if not move:
            return self._partial
        place(self._partial, self.path)
        return self.path

    def abort(self) -> None:
        """Stop encoding and delete the partial file; ``path`` is left untouched."""
        if self._state == "finished":  # closed with move=False: only the file is left
            self._state = "aborted"
            discard(self._partial)
            return
        if self._state != "open":
            return
        self._state = "aborted"
        self._put(_ABORT)
        self._thread.join()
        discard(self._partial)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- encoder thread ----------------------------------------------------------------

    def _run(self) -> None:
        finish = False
        while True:
            item = self._queue.get()
            if item is _FINISH or item is _ABORT:
                finish = item is _FINISH
                break
            if self._error is not None:
                continue  # keep draining so write() never blocks
            array, pts, index = item
            try:
                self._encode(array, pts)
            except BaseException as error:  # surfaced by write()/close()
                self._error, self._error_frame = error, index
        self._shutdown(finish and self._error is None and self.frames_written > 0)

    def _encode(self, array: np.ndarray, pts: int) -> None:
        frame = av.VideoFrame.from_ndarray(array, format=self._input_format)
        frame.pts = pts
        frame.time_base = self.time_base
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        if self._audio is not None:
            self._audio.mux_until(float(pts * self.time_base))

    def _shutdown(self, flush: bool) -> None:
        try:
            if flush:
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
                if self._audio is not None:
                    self._audio.mux_until(float(self._end_pts * self.time_base))
        except BaseException as error:  # surfaced by close()
            self._error, self._error_frame = error, self.frames_written
        finally:
            try:
                self._container.close()
            except BaseException as error:  # surfaced by close()
                if flush and self._error is None:
                    self._error, self._error_frame = error, self.frames_written
            if self._audio is not None:
                self._audio.close()


class AlphaVideoWriter(VideoWriter):
    """Write ``(H, W, 4)`` ``uint8`` RGBA frames into a video that keeps transparency.

    The extension picks the format: ``.mov`` (default choice) is lossless PNG-in-MOV
    (``png`` codec, ``rgba``), decoded with alpha by any FFmpeg-based tool; ``.webm`` is VP9
    ``yuva420p`` (lossy, far smaller, plays with transparency in browsers, but FFmpeg keeps
    the alpha only when decoding with ``libvpx-vp9``). Odd sizes are padded for ``.webm``
    only. Other arguments are as for :class:`VideoWriter`.
    """

    _channels = RGBA_CHANNELS
    _input_format = "rgba"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fps: Fraction | int | str,
        size_hw: tuple[int, int],
        time_base: Fraction | None = None,
        audio_from: str | os.PathLike[str] | None = None,
        crf: int = DEFAULT_CRF,
        queue_size: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        suffix = Path(path).suffix.lower()
        if suffix not in ALPHA_FORMATS:
            raise ValueError(
                f"{path}: transparent video needs a .mov (PNG, lossless) or .webm (VP9) name"
            )
        codec, pix_fmt = ALPHA_FORMATS[suffix]
        super().__init__(
            path,
            fps=fps,
            size_hw=size_hw,
            time_base=time_base,
            audio_from=audio_from,
            codec=codec,
            crf=crf,
            pix_fmt=pix_fmt,
            queue_size=queue_size,
        )
