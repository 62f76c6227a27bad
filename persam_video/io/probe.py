"""Container metadata via PyAV (FFmpeg): exact frame rate, time base, counts, audio, rotation.

Orientation (see :mod:`persam_video.io.orientation`): sizes are in *display* orientation, as
players show the video. A display matrix (portrait phone videos store landscape frames with a
quarter-turn matrix) is read from the first frame's side data (PyAV exposes no stream-level
side data), so probing decodes one frame.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from persam_video.io.errors import VideoReadError
from persam_video.io.orientation import QUARTER_TURN, display_turns

MICROSECONDS = 1_000_000  # av.container.Container.duration is in AV_TIME_BASE units
MATROSKA_DURATION_TAG = "DURATION"  # per-stream "HH:MM:SS.nnnnnnnnn" written by FFmpeg
SECONDS_PER_MINUTE = 60
# FFmpeg demuxers that read single images, or text files rendered as "video".
IMAGE_FORMAT_SUFFIX = "_pipe"
IMAGE_FORMATS = frozenset({"image2"})
TEXT_FORMATS = frozenset({"tty"})
EXPECTED_VIDEO = "expected e.g. mp4, mov, mkv, webm or avi"


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video file (nothing is decoded).

    Attributes:
        path: the probed file.
        format_name: FFmpeg demuxer name, e.g. ``"mov,mp4,m4a,3gp,3g2,mj2"``.
        codec: video codec name, e.g. ``"h264"``.
        size_hw: ``(height, width)`` in pixels as players show the video: a display matrix
            (portrait phone videos) of a quarter turn swaps the coded height and width.
        fps: exact average frame rate (``average_rate``, else ``guessed_rate``), or None.
        time_base: time base of the video stream's timestamps, or None.
        num_frames: frame count written in the container header, or None if it has none
            (Matroska/WebM). It is a claim: a truncated file may hold fewer frames.
        duration: duration of the video stream in seconds (from the stream header or the
            Matroska ``DURATION`` tag), or None if the file does not say.
        container_duration: duration of the whole file in seconds (spans all streams, so
            audio that runs past the video counts), or None.
        start_time: timestamp of the first video frame in seconds (usually 0).
        has_audio: whether the file has at least one audio stream.
        audio_codec: codec name of the first audio stream, or None.
        rotation: the display matrix's counter-clockwise rotation in degrees (0, 90, 180 or
            270); frames are decoded already turned.
        coded_size_hw: ``(height, width)`` as stored, before the rotation.
    """

    path: Path
    format_name: str
    codec: str
    size_hw: tuple[int, int]
    fps: Fraction | None
    time_base: Fraction | None
    num_frames: int | None
    duration: float | None
    container_duration: float | None
    start_time: float
    has_audio: bool
    audio_codec: str | None
    rotation: int = 0
    coded_size_hw: tuple[int, int] | None = None


def _first_frame_rotation(container: av.container.InputContainer) -> int:
    """The display rotation (degrees, 0/90/180/270) read from the first decoded frame's side
    data; 0 when there is none or nothing decodes (decoding reports that later)."""
    try:
        for frame in container.decode(container.streams.video[0]):
            return display_turns(frame.rotation or 0) * QUARTER_TURN
    except (av.FFmpegError, ValueError):
        pass
    return 0


def _positive(rate: Fraction | None) -> Fraction | None:
    return Fraction(rate) if rate is not None and rate > 0 else None


def _parse_clock(text: str) -> float | None:
    """``"HH:MM:SS.fff"`` -> seconds, or None if ``text`` is not in that form."""
    try:
        hours, minutes, seconds = text.split(":")
        return (int(hours) * SECONDS_PER_MINUTE + int(minutes)) * SECONDS_PER_MINUTE + float(
            seconds
        )
    except ValueError:
        return None


def _stream_duration(stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get(MATROSKA_DURATION_TAG)
    return _parse_clock(tag) if tag else None


def local_path(path: str | os.PathLike[str]) -> str:
    """``path`` as FFmpeg (PyAV, decord) must be given a local file: absolute. FFmpeg reads a
    name that begins like a protocol (``concat:a.mp4|b.mp4``, ``http:...``, ``subfile,...``)
    as a URL, which makes it read other files than the one named, or none; an absolute path
    begins with the root (or a drive), never with a protocol."""
    return os.path.abspath(path)


def open_container(path: Path) -> av.container.InputContainer:
    """Open ``path`` with PyAV, turning FFmpeg failures into one-line ``VideoReadError``."""
    if not path.exists():
        raise VideoReadError(f"{path}: no such file or folder")
    if path.is_dir():
        raise VideoReadError(f"{path}: is a folder; expected a video file")
    if _is_playlist(path):
        raise VideoReadError(
            f"{path}: is a playlist, which makes FFmpeg read other files (or URLs) it names; "
            "give the video file itself"
        )
    try:
        return av.open(local_path(path), mode="r")
    except av.FFmpegError as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise VideoReadError(
            f"{path}: not a video file FFmpeg can read ({reason}); {EXPECTED_VIDEO}"
        ) from None


#: Formats whose files name other inputs: HLS and M3U playlists, FFmpeg's concat lists, SDP.
PLAYLIST_SUFFIXES = frozenset({".m3u8", ".m3u", ".ffconcat", ".sdp"})
PLAYLIST_SIGNATURES = (b"#EXTM3U", b"ffconcat", b"v=0")
_SIGNATURE_BYTES = 16


def _is_playlist(path: Path) -> bool:
    """Whether ``path`` is a playlist or another file that points FFmpeg to other inputs."""
    if path.suffix.lower() in PLAYLIST_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(_SIGNATURE_BYTES).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError:
        return False
    return head.startswith(PLAYLIST_SIGNATURES)


def check_video_container(container: av.container.InputContainer, path: Path) -> None:
    """Refuse containers that are images, text, or carry no video stream."""
    name = container.format.name
    if name in TEXT_FORMATS:
        raise VideoReadError(f"{path}: not a video file (it holds text); {EXPECTED_VIDEO}")
    if name.endswith(IMAGE_FORMAT_SUFFIX) or name in IMAGE_FORMATS:
        raise VideoReadError(
            f"{path}: is a single image ({name}), not a video; to read image frames pass "
            "the folder that holds them"
        )
    if not container.streams.video:
        raise VideoReadError(f"{path}: has no video stream; {EXPECTED_VIDEO}")


def info_from_container(container: av.container.InputContainer, path: Path) -> VideoInfo:
    """Build a :class:`VideoInfo` from an open container (after ``check_video_container``)."""
    stream = container.streams.video[0]
    time_base = _positive(stream.time_base)
    fps = _positive(stream.average_rate) or _positive(stream.guessed_rate)
    container_duration = None
    if container.duration is not None:
        container_duration = container.duration / MICROSECONDS
    start_time = 0.0
    if stream.start_time is not None and time_base is not None:
        start_time = float(stream.start_time * time_base)
    audio = container.streams.audio
    coded = (stream.codec_context.height, stream.codec_context.width)
    rotation = _first_frame_rotation(container)
    shown = coded[::-1] if rotation % (2 * QUARTER_TURN) else coded
    return VideoInfo(
        path=path,
        format_name=container.format.name,
        codec=stream.codec_context.name,
        size_hw=shown,
        fps=fps,
        time_base=time_base,
        num_frames=stream.frames or None,
        duration=_stream_duration(stream),
        container_duration=container_duration,
        start_time=start_time,
        has_audio=bool(audio),
        audio_codec=audio[0].codec_context.name if audio else None,
        rotation=rotation,
        coded_size_hw=coded,
    )


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Read a video file's metadata with PyAV without decoding any frame.

    Raises:
        VideoReadError: missing path, folder, not a video (text, image, audio only).
    """
    path = Path(path)
    container = open_container(path)
    try:
        check_video_container(container, path)
        return info_from_container(container, path)
    finally:
        container.close()
