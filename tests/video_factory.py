"""Synthetic test videos for persam-video tests (importable helper, not a conftest).

Stable API, used by other test modules (end-to-end tests included):

* ``make_video(path, *, n_frames, size_hw, fps=Fraction(25), audio=False, vfr=False,
  codec="libx264", faststart=False) -> list[np.ndarray]`` writes a video with PyAV and returns
  the ``(H, W, 3)`` ``uint8`` RGB frames it encoded (before lossy compression).
* ``synthetic_frame(index, size_hw)`` / ``synthetic_labels(index, size_hw)``: the frame drawn
  at ``index`` and its ground-truth label map (``1`` = red box moving right, ``2`` = green
  box moving down, ``0`` = background), so segmentation results can be checked.
* ``frame_times(n_frames, fps, vfr)``: the exact presentation times (``Fraction`` seconds)
  ``make_video`` gives the frames.

The container comes from the extension (``.mp4``, ``.mov``, ``.mkv``, ``.webm``, ``.avi``).
Odd sizes are encoded as ``yuv444p`` (4:2:0 needs even sizes), so use ``libx264`` for them.
Audio is a quiet 440 Hz tone lasting as long as the video, encoded with the container's usual
codec (AAC; Opus for WebM; MP3 for AVI).
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

BACKGROUND_LEVEL = 40
BOX_FRACTION = 4  # boxes are 1/4 of the frame's height and width
RED_ID = 1
GREEN_ID = 2
RED = (220, 30, 30)
GREEN = (30, 200, 60)
VFR_INTERVAL_PATTERN = (1, 3, 1, 2)  # frame gaps, in units of 1 / fps, for vfr=True
AUDIO_SAMPLE_RATE = 48_000
AUDIO_TONE_HZ = 440.0
AUDIO_AMPLITUDE = 0.2
AUDIO_CHUNK = 1024
FACTORY_CRF = "20"
FACTORY_PRESET = "veryfast"  # keeps B-frames, so decoders must reorder
FACTORY_BIT_RATE = 4_000_000  # for encoders other than x264, so frames stay close to input
AUDIO_CODECS = {".webm": "libopus", ".avi": "libmp3lame"}
DEFAULT_AUDIO_CODEC = "aac"


def _box_origins(index: int, size_hw: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    height, width = size_hw
    box_h, box_w = max(1, height // BOX_FRACTION), max(1, width // BOX_FRACTION)
    red = (height // 8, (3 * index) % max(1, width - box_w))
    green = ((2 * index) % max(1, height - box_h), width // 2)
    return red, green


def synthetic_labels(index: int, size_hw: tuple[int, int]) -> np.ndarray:
    """Ground truth of ``synthetic_frame(index, size_hw)``: ``(H, W)`` ``uint8`` label map."""
    height, width = size_hw
    box_h, box_w = max(1, height // BOX_FRACTION), max(1, width // BOX_FRACTION)
    labels = np.zeros((height, width), dtype=np.uint8)
    for (top, left), label in zip(_box_origins(index, size_hw), (RED_ID, GREEN_ID), strict=True):
        labels[top : top + box_h, left : left + box_w] = label
    return labels


def synthetic_frame(index: int, size_hw: tuple[int, int]) -> np.ndarray:
    """Frame ``index``: a gray gradient with a red and a green box; ``(H, W, 3)`` ``uint8``."""
    height, width = size_hw
    ramp = np.linspace(0, 60, width, dtype=np.float32)[None, :] + np.float32(index % 50)
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[:] = (BACKGROUND_LEVEL + ramp)[..., None].astype(np.uint8)
    labels = synthetic_labels(index, size_hw)
    frame[labels == RED_ID] = RED
    frame[labels == GREEN_ID] = GREEN
    return frame


def frame_times(n_frames: int, fps: Fraction, vfr: bool = False) -> list[Fraction]:
    """Presentation times used by ``make_video``: ``i / fps``, or irregular gaps if ``vfr``."""
    if not vfr:
        return [Fraction(i) / fps for i in range(n_frames)]
    times, ticks = [], 0
    for i in range(n_frames):
        times.append(Fraction(ticks) / fps)
        ticks += VFR_INTERVAL_PATTERN[i % len(VFR_INTERVAL_PATTERN)]
    return times


def _add_audio(container: av.container.OutputContainer, suffix: str) -> av.audio.AudioStream:
    stream = container.add_stream(
        AUDIO_CODECS.get(suffix, DEFAULT_AUDIO_CODEC), rate=AUDIO_SAMPLE_RATE
    )
    stream.layout = "mono"
    return stream


class _Tone:
    """Encodes a sine tone incrementally, so audio interleaves with the video packets."""

    def __init__(self, container: av.container.OutputContainer, stream) -> None:
        self._container = container
        self._stream = stream
        self._written = 0

    def encode_until(self, seconds: float) -> None:
        total = round(seconds * AUDIO_SAMPLE_RATE)
        for start in range(self._written, total, AUDIO_CHUNK):
            t = np.arange(start, min(start + AUDIO_CHUNK, total)) / AUDIO_SAMPLE_RATE
            wave = (AUDIO_AMPLITUDE * np.sin(2 * np.pi * AUDIO_TONE_HZ * t)).astype(np.float32)
            # PyAV resamples to the encoder's sample format and frame size.
            frame = av.AudioFrame.from_ndarray(wave[None, :], format="fltp", layout="mono")
            frame.sample_rate = AUDIO_SAMPLE_RATE
            frame.pts = start
            frame.time_base = Fraction(1, AUDIO_SAMPLE_RATE)
            self._mux(self._stream.encode(frame))
        self._written = max(self._written, total)

    def finish(self, seconds: float) -> None:
        self.encode_until(seconds)
        self._mux(self._stream.encode(None))

    def _mux(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            self._container.mux(packet)


def make_video(
    path: str | os.PathLike[str],
    *,
    n_frames: int,
    size_hw: tuple[int, int],
    fps: Fraction | int = Fraction(25),
    audio: bool = False,
    vfr: bool = False,
    codec: str = "libx264",
    faststart: bool = False,
    rotation: int = 0,
) -> list[np.ndarray]:
    """Write a synthetic video and return the RGB frames that were encoded.

    Args:
        path: output file; the extension picks the container.
        n_frames: number of frames.
        size_hw: ``(H, W)``; odd values are fine with ``libx264``.
        fps: exact frame rate, e.g. ``Fraction(30000, 1001)``.
        audio: add a tone audio track as long as the video.
        vfr: irregular timestamps (gaps of 1, 3, 1, 2 frame intervals, repeating).
        codec: video encoder (``libx264``, ``mpeg4``, ``libvpx-vp9``, ...).
        faststart: MP4/MOV only: put the index before the data (as streaming files do).
        rotation: a display matrix turning the video this many degrees counter-clockwise
            (90: a portrait phone video stored landscape); the frames returned are as stored.

    Returns:
        ``n_frames`` arrays of shape ``(H, W, 3)``, dtype ``uint8``.
    """
    path = Path(path)
    fps = Fraction(fps)
    height, width = size_hw
    options = {"movflags": "+faststart"} if faststart else {}
    frames = [synthetic_frame(i, size_hw) for i in range(n_frames)]
    times = frame_times(n_frames, fps, vfr)
    time_base = 1 / fps
    with av.open(str(path), mode="w", options=options) as container:
        video = container.add_stream(codec, rate=fps)
        video.height, video.width = height, width
        video.pix_fmt = "yuv420p" if height % 2 == 0 and width % 2 == 0 else "yuv444p"
        video.codec_context.time_base = time_base
        if rotation:
            video.set_display_rotation(rotation)
        if codec == "libx264":
            video.options = {"crf": FACTORY_CRF, "preset": FACTORY_PRESET}
        else:
            video.bit_rate = FACTORY_BIT_RATE
        tone = _Tone(container, _add_audio(container, path.suffix.lower())) if audio else None
        for rgb, time in zip(frames, times, strict=True):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = round(time / time_base)
            frame.time_base = time_base
            for packet in video.encode(frame):
                container.mux(packet)
            if tone is not None:
                tone.encode_until(float(time))
        for packet in video.encode(None):
            container.mux(packet)
        if tone is not None:
            tone.finish(float((times[-1] if times else 0) + 1 / fps))
    return frames
