"""Frame-by-frame decoding of video files: decord first, PyAV to resume after a failure.

decord quirks handled here (measured with decord 0.6.0):

* ``torch`` must be imported (and CUDA queried) before ``decord``, or decord can hang or
  crash; :func:`import_decord` does that once.
* ``decord.VideoReader`` demuxes the *whole* file when it opens it, to index packets. Its
  ``len()`` is the number of video packets found, so a truncated Matroska/AVI file reports
  only the packets that survived, and a truncated MP4 (index at the front) fails to open.
* Decode errors happen in decord's decoder thread and surface at a nondeterministic later
  call, so the frame index decord fails at is not where the damage is. We therefore treat any
  decord error at frame ``i`` as "decord cannot go on": frames ``0..i-1`` (already yielded,
  and correct) are kept and PyAV resumes decoding at frame ``i`` (seek to the keyframe before
  it, skip to its timestamp). PyAV stops deterministically at the first undecodable frame,
  keeping the frames its decoder still held for reordering that come before every lost one
  (damage right after the first keyframe would otherwise lose frame 0, which decodes fine).
* ``get_frame_timestamp`` returns float32 seconds; we snap them to the stream's time base.
* decord applies a display matrix (frames come turned as players show them) but garbles the
  pixels at some sizes (a 64x48 video turned by 90 degrees came out as 64x48x4), and some small
  videos decode to 6 channels (16x16); rotated videos are therefore decoded with PyAV, which
  does not turn frames, so we turn them (``np.rot90``), and any decord frame whose shape is
  not the probed one switches to PyAV from that frame on.

End-of-stream rule (truncated versus merely over-counted files)
---------------------------------------------------------------
Decoding stops at the first frame that cannot be decoded (or at the real end); say ``D``
frames were decoded. The stream then ended *normally* if ``D`` comes close to everything the
file claims:

* every claimed frame count (the container header's, and decord's packet count) is at most
  ``D + END_SLACK_FRAMES``; containers and decord often count a few trailing packets that
  decode to nothing (B-frame reorder delay, a damaged last packet);
* if the header has no frame count (Matroska/WebM) but gives the video stream's duration,
  the last decoded frame ends no more than ``END_SLACK_FRAMES`` frame intervals (at the
  stream's average rate) before that duration. A truncated Matroska file keeps its duration
  in the header but loses its index, so this is what tells it from a complete one (measured:
  11 of 30 frames passed as complete with the former one-second slack). Time, not a count,
  so variable frame rates are fine; a final frame shown for longer than that, as in a
  slideshow, is reported as missing frames.

Otherwise :class:`~persam_video.io.errors.VideoDecodeError` is raised for frame ``D`` after
frames ``0..D-1`` were yielded.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import ModuleType

import av
import numpy as np

from persam_video.io.errors import VideoDecodeError
from persam_video.io.frame import Frame
from persam_video.io.orientation import display_turns
from persam_video.io.probe import VideoInfo, local_path

logger = logging.getLogger(__name__)

END_SLACK_FRAMES = 4
#: decord timestamps from here on (about 31,700 years) stand for "no timestamp".
NO_TIMESTAMP_SECONDS = 1e12
RGB_FORMAT = "rgb24"
RGB_CHANNELS = 3
DECORD_AUTO_THREADS = 0


@functools.cache
def import_decord() -> ModuleType:
    """Import decord safely: torch (and its CUDA probe) first, then decord, quietly."""
    import torch

    torch.cuda.is_available()
    import decord

    decord.logging.set_level(decord.logging.QUIET)
    return decord


def _snap_time(seconds: float, time_base: Fraction | None) -> float:
    """Round a float32 decord timestamp to the nearest tick of the stream's time base."""
    if time_base is None:
        return float(seconds)
    return float(round(Fraction(float(seconds)) / time_base) * time_base)


def _frame_time(seconds: float, index: int, info: VideoInfo) -> float | None:
    """A decord timestamp snapped to the time base; for a packet without one (decord then
    reports about 9.2e15 s, FFmpeg's "no timestamp" scaled) the frame's place at the average
    rate, or None."""
    if np.isfinite(seconds) and 0 <= seconds < NO_TIMESTAMP_SECONDS:
        return _snap_time(seconds, info.time_base)
    return float(index / info.fps) if info.fps else None


def _as_numpy(pixels: object) -> np.ndarray:
    """decord NDArray (or a tensor, if the caller changed decord's bridge) -> numpy."""
    array = pixels.asnumpy() if hasattr(pixels, "asnumpy") else np.asarray(pixels)
    return np.ascontiguousarray(array)


def _decord_frames(reader: object, info: VideoInfo, progress: list[int]) -> Iterator[Frame]:
    """Yield frames until decord ends or fails; ``progress[0]`` counts frames yielded."""
    decord = import_decord()
    for index in range(len(reader)):
        try:
            pixels = reader.next()
        except StopIteration:
            return
        except decord.DECORDError as error:
            logger.debug("decord failed near frame %d: %s", index, error)
            raise
        rgb = _as_numpy(pixels)
        if rgb.shape != (*info.size_hw, RGB_CHANNELS):  # seen for some small frame sizes
            logger.debug("decord gave frame %d of shape %s", index, rgb.shape)
            raise decord.DECORDError(f"frame of shape {rgb.shape}, expected {info.size_hw}")
        start, _ = reader.get_frame_timestamp(index)
        yield Frame(index, _frame_time(start, index, info), rgb)
        progress[0] = index + 1


def _pyav_frames(
    path: Path, info: VideoInfo, first_index: int, resume_time: float | None
) -> Iterator[Frame]:
    """Decode with PyAV, numbering frames from ``first_index``.

    If ``resume_time`` is given, seek to the keyframe before it and skip the frames that
    start more than half a frame interval before it. Decoding uses slice threads only: frame
    threading would delay decode errors by up to one frame per thread.
    """
    container = av.open(local_path(path))
    try:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        turns = display_turns(info.rotation)
        time_base = stream.time_base
        origin = stream.start_time or 0
        skip_before = None
        if resume_time is not None and time_base:
            target = origin + round(Fraction(resume_time) / time_base)
            half_frame = round(1 / (2 * info.fps * time_base)) if info.fps else 0
            container.seek(target, stream=stream, backward=True, any_frame=False)
            skip_before = target - half_frame
        index = first_index
        for frame in _decode_until_damage(container, stream):
            if skip_before is not None and frame.pts is not None and frame.pts < skip_before:
                continue
            if frame.pts is not None and time_base:
                time = float((frame.pts - origin) * time_base)
            else:
                time = float(index / info.fps) if info.fps else None
            rgb = frame.to_ndarray(format=RGB_FORMAT)
            if turns:  # PyAV decodes the stored orientation; decord already turns frames
                rgb = np.rot90(rgb, turns)
            yield Frame(index, time, np.ascontiguousarray(rgb))
            index += 1
    finally:
        container.close()


def _decode_until_damage(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> Iterator[av.VideoFrame]:
    """The frames of ``stream`` in presentation order, up to the first packet that cannot be
    decoded; then that packet's error is raised.

    Before raising, the frames the decoder still holds are taken out (B-frame reordering keeps
    a few back: a damaged packet right after the first keyframe would otherwise lose frame 0,
    which decoded fine). Of those, only frames shown before every frame that is lost (the
    damaged packet's and those of the packets not sent yet, whose timestamps are demuxed, not
    decoded) are kept, so that the frames given stay consecutive.
    """
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.FFmpegError as error:
            lost = [packet.pts]
            try:
                lost.extend(rest.pts for rest in container.demux(stream))
            except av.FFmpegError:  # a damaged container: the timestamps read so far
                pass
            known = [pts for pts in lost if pts is not None]
            try:
                held = stream.codec_context.decode(None)  # flush the decoder
            except av.FFmpegError:
                held = []
            if known:
                first_lost = min(known)
                yield from (f for f in held if f.pts is not None and f.pts < first_lost)
            raise error
        yield from frames


def _check_complete(
    info: VideoInfo, decoded: int, last_time: float | None, packets: int | None, detail: str
) -> None:
    """Raise ``VideoDecodeError`` if decoding stopped well before what the file claims."""
    if decoded == 0:
        raise VideoDecodeError(info.path, 0, f"{detail}; the file has no decodable frame")
    counts = [n for n in (info.num_frames, packets) if n]
    claimed = max(counts, default=0)
    if claimed - decoded > END_SLACK_FRAMES:
        raise VideoDecodeError(
            info.path,
            decoded,
            f"{detail}; the file claims {claimed} frames (truncated or corrupt file)",
        )
    promised = frames_in_duration(info)
    if info.num_frames or promised is None:
        return  # a header frame count is exact; durations are only used when it is missing
    frame_time = 1 / float(info.fps)
    reached = (last_time if last_time is not None else 0.0) + frame_time  # end of the last frame
    missing = round((info.duration - reached) / frame_time)
    if missing > END_SLACK_FRAMES:
        raise VideoDecodeError(
            info.path,
            decoded,
            f"{detail} at {reached:.2f}s; the file claims {info.duration:.2f}s of video, about "
            f"{promised} frames, so about {missing} are missing (truncated or corrupt file)",
        )


def frames_in_duration(info: VideoInfo) -> int | None:
    """The frame count the video stream's duration promises at its frame rate, or None."""
    if info.duration is None or not info.fps:
        return None
    return max(1, round(info.duration * float(info.fps)))


def open_decord(path: Path, info: VideoInfo | None = None) -> object | None:
    """Open (and index) ``path`` with decord; None if decord cannot, e.g. a truncated MP4, or
    should not: a video with a display matrix (``info.rotation``), which decord turns but
    garbles at some frame sizes (frames of 4 or 6 channels), is left to PyAV."""
    if info is not None and info.rotation:
        return None
    decord = import_decord()
    try:
        return decord.VideoReader(
            local_path(path), ctx=decord.cpu(0), num_threads=DECORD_AUTO_THREADS
        )
    except decord.DECORDError:
        logger.debug("decord cannot open %s; PyAV will decode it", path)
        return None


def decode_video(path: Path, info: VideoInfo, reader: object | None) -> Iterator[Frame]:
    """Yield every decodable frame of a video file, then apply the end-of-stream rule.

    Args:
        path: a file already accepted by :func:`persam_video.io.probe.probe`.
        info: its probe result.
        reader: ``open_decord(path)``; None decodes everything with PyAV.

    Yields:
        :class:`Frame` objects with consecutive indices from 0.

    Raises:
        VideoDecodeError: after the decodable frames, if the file is truncated or corrupt.
    """
    decord = import_decord()
    progress = [0]
    last_time: float | None = None
    packets = len(reader) if reader is not None else None
    resume_time: float | None = None
    use_pyav = reader is None
    detail = "no further frame could be read"
    if reader is not None:
        try:
            for frame in _decord_frames(reader, info, progress):
                last_time = frame.time
                yield frame
        except decord.DECORDError:
            use_pyav = True
            if progress[0]:
                start, _ = reader.get_frame_timestamp(progress[0])
                resume_time = _frame_time(start, progress[0], info)
        del reader
    if use_pyav:
        try:
            for frame in _pyav_frames(path, info, progress[0], resume_time):
                last_time = frame.time
                yield frame
                progress[0] += 1
        except av.FFmpegError as error:
            detail = getattr(error, "strerror", None) or type(error).__name__
    _check_complete(info, progress[0], last_time, packets, detail)


def frames_claimed(info: VideoInfo, reader: object | None) -> int | None:
    """Best estimate of a file's frame count before decoding.

    The header's frame count; else decord's packet count when decord opened the file (or the
    stream's duration times its frame rate when that promises more: a truncated Matroska
    file); else duration times frame rate (rough for variable frame rates).
    """
    if info.num_frames:
        return info.num_frames
    promised = frames_in_duration(info)
    if reader is not None:  # a truncated Matroska file indexes only the packets left
        packets = len(reader)
        return promised if promised and promised - packets > END_SLACK_FRAMES else packets
    duration = info.duration if info.duration is not None else info.container_duration
    if duration is None or not info.fps:
        return None
    return max(1, round(duration * float(info.fps)))
