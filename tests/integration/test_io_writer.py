"""Tests for persam_video.io.writer: exact rates, timestamps, padding, audio, alpha, atomicity."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from persam_video.io import (
    AlphaVideoWriter,
    VideoWriteError,
    VideoWriter,
    open_source,
    probe,
)
from tests.video_factory import frame_times, make_video, synthetic_frame

SIZE = (64, 96)
ODD_SIZE = (63, 95)
MAX_MEAN_ABS_ERROR = 6.0


def _decode_pyav(path: Path, fmt: str = "rgb24") -> list[tuple[Fraction, np.ndarray]]:
    """(presentation time, pixels) of every frame, decoded independently of our reader."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [
            (frame.pts * stream.time_base, frame.to_ndarray(format=fmt))
            for frame in container.decode(stream)
        ]


def _audio_packets(path: Path) -> list[av.Packet]:
    with av.open(str(path)) as container:
        return [p for p in container.demux(container.streams.audio[0]) if p.dts is not None]


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _mean_abs_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# -- frame rate and timestamps ----------------------------------------------------------


@pytest.mark.parametrize(
    ("fps", "suffix"),
    [(Fraction(30000, 1001), ".mp4"), (Fraction(24), ".mov"), (Fraction(25), ".mkv")],
)
def test_constant_rate_round_trip_is_exact(tmp_path, fps, suffix):
    path = tmp_path / f"out{suffix}"
    frames = [synthetic_frame(i, SIZE) for i in range(20)]
    with VideoWriter(path, fps=fps, size_hw=SIZE) as writer:
        for frame in frames:
            writer.write(frame)
    info = probe(path)
    assert info.fps == fps and isinstance(info.fps, Fraction)
    decoded = _decode_pyav(path)
    assert len(decoded) == 20
    expected_times = frame_times(20, fps)
    if suffix == ".mkv":  # Matroska stores milliseconds
        assert [float(t) for t, _ in decoded] == pytest.approx(
            [float(t) for t in expected_times], abs=1e-3
        )
    else:
        assert [t for t, _ in decoded] == expected_times
    for (_, got), expected in zip(decoded, frames, strict=True):
        assert _mean_abs_error(got, expected) < MAX_MEAN_ABS_ERROR


def test_ntsc_rate_survives_read_and_rewrite(tmp_path):
    source = tmp_path / "in.mp4"
    make_video(source, n_frames=15, size_hw=SIZE, fps=Fraction(30000, 1001))
    output = tmp_path / "out.mp4"
    with open_source(source) as frames:
        with VideoWriter(output, fps=frames.fps, size_hw=frames.size) as writer:
            for frame in frames:
                writer.write(frame.rgb, time=frame.time)
    assert probe(output).fps == Fraction(30000, 1001)
    assert writer.time_base == Fraction(1, 30000)
    assert [t for t, _ in _decode_pyav(output)] == frame_times(15, Fraction(30000, 1001))


@pytest.mark.parametrize("use_source_time_base", [False, True])
def test_variable_frame_rate_times_are_kept(tmp_path, use_source_time_base):
    source = tmp_path / "vfr.mp4"
    make_video(source, n_frames=24, size_hw=SIZE, vfr=True)
    output = tmp_path / "out.mp4"
    with open_source(source) as frames:
        time_base = frames.time_base if use_source_time_base else None
        with VideoWriter(output, fps=frames.fps, size_hw=frames.size, time_base=time_base) as w:
            for frame in frames:
                w.write(frame.rgb, time=frame.time)
    expected = frame_times(24, Fraction(25), vfr=True)
    assert [t for t, _ in _decode_pyav(output)] == expected
    gaps = np.diff([float(t) for t in expected])
    assert gaps.max() == pytest.approx(3 * gaps.min())


def test_frames_without_time_follow_the_previous_one(tmp_path):
    path = tmp_path / "mixed.mp4"
    with VideoWriter(path, fps=10, size_hw=SIZE) as writer:
        writer.write(synthetic_frame(0, SIZE))
        writer.write(synthetic_frame(1, SIZE), time=0.5)
        writer.write(synthetic_frame(2, SIZE))
    assert [float(t) for t, _ in _decode_pyav(path)] == [0.0, 0.5, 0.6]


def test_time_must_increase(tmp_path):
    with VideoWriter(tmp_path / "t.mp4", fps=25, size_hw=SIZE) as writer:
        writer.write(synthetic_frame(0, SIZE), time=1.0)
        with pytest.raises(ValueError, match="does not come after"):
            writer.write(synthetic_frame(1, SIZE), time=1.0)
        with pytest.raises(ValueError, match="seconds >= 0"):
            writer.write(synthetic_frame(1, SIZE), time=float("nan"))
        writer.write(synthetic_frame(1, SIZE), time=1.04)


# -- odd sizes --------------------------------------------------------------------------


def test_odd_sizes_are_padded_by_repeating_the_edge(tmp_path):
    path = tmp_path / "odd.mp4"
    frame = synthetic_frame(3, ODD_SIZE)
    frame[-1, :] = (250, 250, 250)  # bright last row and column make padding visible
    frame[:, -1] = (250, 250, 250)
    with VideoWriter(path, fps=25, size_hw=ODD_SIZE) as writer:
        assert writer.output_size_hw == (64, 96)
        writer.write(frame)
    assert probe(path).size_hw == (64, 96)
    (_, decoded), *_ = _decode_pyav(path)
    assert _mean_abs_error(decoded[:63, :95], frame) < MAX_MEAN_ABS_ERROR
    assert decoded[63, :95].mean() > 200 and decoded[:63, 95].mean() > 200


def test_rgba_png_mov_needs_no_padding(tmp_path):
    with AlphaVideoWriter(tmp_path / "a.mov", fps=25, size_hw=ODD_SIZE) as writer:
        assert writer.output_size_hw == ODD_SIZE
        writer.write(np.zeros((*ODD_SIZE, 4), dtype=np.uint8))


# -- audio ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_audio_is_copied_without_reencoding(tmp_path, suffix):
    source = tmp_path / f"talk{suffix}"
    make_video(source, n_frames=50, size_hw=SIZE, audio=True)
    output = tmp_path / f"overlay{suffix}"
    with open_source(source) as frames:
        assert frames.has_audio
        with VideoWriter(output, fps=frames.fps, size_hw=frames.size, audio_from=source) as w:
            assert w.has_audio
            for frame in frames:
                w.write(frame.rgb, time=frame.time)
    source_info, output_info = probe(source), probe(output)
    assert output_info.has_audio and output_info.audio_codec == source_info.audio_codec == "aac"
    source_packets, output_packets = _audio_packets(source), _audio_packets(output)
    assert abs(len(output_packets) - len(source_packets)) <= 1
    assert [bytes(p) for p in output_packets[:10]] == [bytes(p) for p in source_packets[:10]]
    with av.open(str(output)) as container:
        audio = container.streams.audio[0]
        audio_seconds = float(audio.duration * audio.time_base) if audio.duration else None
        if audio_seconds is None:
            last = output_packets[-1]
            audio_seconds = float((last.pts + last.duration) * last.time_base)
    assert audio_seconds == pytest.approx(2.0, abs=0.1)  # 50 frames at 25 fps


def test_audio_is_cut_at_the_end_of_the_video(tmp_path):
    source = tmp_path / "long.mp4"
    make_video(source, n_frames=50, size_hw=SIZE, audio=True)
    output = tmp_path / "short.mp4"
    with VideoWriter(output, fps=25, size_hw=SIZE, audio_from=source) as writer:
        for i in range(10):
            writer.write(synthetic_frame(i, SIZE))
    packets = _audio_packets(output)
    last_start = max(float(p.pts * p.time_base) for p in packets)
    assert 0.3 < last_start < 0.4 + 1e-6  # 10 frames = 0.4 s; full source audio is 2 s


def test_audio_from_a_silent_file_adds_nothing(tmp_path):
    source = tmp_path / "silent.mp4"
    make_video(source, n_frames=5, size_hw=SIZE)
    output = tmp_path / "out.mp4"
    with VideoWriter(output, fps=25, size_hw=SIZE, audio_from=source) as writer:
        assert not writer.has_audio
        writer.write(synthetic_frame(0, SIZE))
    assert not probe(output).has_audio


# -- atomicity and errors ---------------------------------------------------------------


def test_output_appears_only_on_close(tmp_path):
    path = tmp_path / "overlay.mp4"
    writer = VideoWriter(path, fps=25, size_hw=SIZE)
    for i in range(5):
        writer.write(synthetic_frame(i, SIZE))
    assert not path.exists()
    writer.close()
    assert _names(tmp_path) == ["overlay.mp4"]
    assert writer.frames_written == 5 and len(_decode_pyav(path)) == 5
    with pytest.raises(ValueError, match="writer is closed"):
        writer.write(synthetic_frame(5, SIZE))


def test_abort_leaves_nothing_and_keeps_an_older_file(tmp_path):
    path = tmp_path / "overlay.mp4"
    path.write_bytes(b"previous result")
    writer = VideoWriter(path, fps=25, size_hw=SIZE)
    for i in range(5):
        writer.write(synthetic_frame(i, SIZE))
    writer.abort()
    assert _names(tmp_path) == ["overlay.mp4"]
    assert path.read_bytes() == b"previous result"


def test_crash_inside_with_leaves_no_file(tmp_path):
    path = tmp_path / "overlay.mp4"
    with pytest.raises(RuntimeError, match="model crashed"):
        with VideoWriter(path, fps=25, size_hw=SIZE) as writer:
            for i in range(12):
                writer.write(synthetic_frame(i, SIZE))
            raise RuntimeError("model crashed")
    assert _names(tmp_path) == []


def test_encoder_thread_errors_surface_and_clean_up(tmp_path):
    path = tmp_path / "bad.mp4"
    # mpeg4 cannot encode yuv444p: the encoder fails when it opens, in its thread.
    with pytest.raises(VideoWriteError, match="encoding failed at frame 0") as info:
        with VideoWriter(path, fps=25, size_hw=SIZE, codec="mpeg4", pix_fmt="yuv444p") as w:
            for i in range(30):
                w.write(synthetic_frame(i, SIZE))
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert _names(tmp_path) == []


def test_closing_without_frames_saves_nothing(tmp_path):
    writer = VideoWriter(tmp_path / "empty.mp4", fps=25, size_hw=SIZE)
    with pytest.raises(VideoWriteError, match="no frames"):
        writer.close()
    assert _names(tmp_path) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(fps=29.97), "floats lose exactness"),
        (dict(fps=0), "positive"),
        (dict(size_hw=(0, 10)), "size_hw"),
        (dict(codec="no-such-codec"), "cannot set up encoder"),
        (dict(pix_fmt="no-such-format"), "unknown pix_fmt"),
        (dict(queue_size=0), "queue_size"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    arguments = {"fps": 25, "size_hw": SIZE, **kwargs}
    with pytest.raises(ValueError, match=message):
        VideoWriter(tmp_path / "x.mp4", **arguments)
    assert _names(tmp_path) == []


def test_bad_paths_and_frames(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        VideoWriter(tmp_path / "missing" / "x.mp4", fps=25, size_hw=SIZE)
    with pytest.raises(ValueError, match="container format"):
        VideoWriter(tmp_path / "x.notavideo", fps=25, size_hw=SIZE)
    with VideoWriter(tmp_path / "x.mp4", fps=25, size_hw=SIZE) as writer:
        with pytest.raises(ValueError, match=r"expected uint8 RGB of shape \(64, 96, 3\)"):
            writer.write(np.zeros((64, 96, 4), dtype=np.uint8))
        with pytest.raises(ValueError, match="expected uint8 RGB"):
            writer.write(np.zeros((64, 96, 3), dtype=np.float32))
        writer.write(synthetic_frame(0, SIZE))


def test_writer_copies_frames_so_callers_may_reuse_buffers(tmp_path):
    path = tmp_path / "reuse.mp4"
    buffer = np.zeros((*SIZE, 3), dtype=np.uint8)
    with VideoWriter(path, fps=25, size_hw=SIZE, queue_size=16) as writer:
        for level in (0, 250):
            buffer[:] = level
            writer.write(buffer)
    first, second = (pixels.mean() for _, pixels in _decode_pyav(path))
    assert first < 20 and second > 230


# -- alpha ------------------------------------------------------------------------------


def _rgba_frames(n: int, size_hw: tuple[int, int]) -> list[np.ndarray]:
    frames = []
    for i in range(n):
        alpha = np.zeros(size_hw, dtype=np.uint8)
        alpha[size_hw[0] // 4 : size_hw[0] // 2, i : i + size_hw[1] // 3] = 255
        alpha[0, :] = np.linspace(0, 255, size_hw[1]).astype(np.uint8)  # partial alpha ramp
        frames.append(np.dstack([synthetic_frame(i, size_hw), alpha]))
    return frames


def test_png_mov_alpha_round_trip_is_lossless(tmp_path):
    path = tmp_path / "cutout.mov"
    frames = _rgba_frames(5, ODD_SIZE)
    with AlphaVideoWriter(path, fps=Fraction(24000, 1001), size_hw=ODD_SIZE) as writer:
        for frame in frames:
            writer.write(frame)
    info = probe(path)
    assert info.codec == "png" and info.fps == Fraction(24000, 1001)
    decoded = _decode_pyav(path, fmt="rgba")
    assert len(decoded) == 5
    for (_, got), expected in zip(decoded, frames, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_vp9_webm_alpha_round_trip_with_libvpx_decoder(tmp_path):
    path = tmp_path / "cutout.webm"
    frames = _rgba_frames(4, SIZE)
    with AlphaVideoWriter(path, fps=25, size_hw=SIZE) as writer:
        for frame in frames:
            writer.write(frame)
    decoded = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoder = av.CodecContext.create("libvpx-vp9", "r")
        for packet in container.demux(stream):
            for frame in decoder.decode(packet):
                decoded.append(frame.to_ndarray(format="rgba"))
    assert len(decoded) == 4
    for got, expected in zip(decoded, frames, strict=True):
        mask = expected[..., 3] == 255
        assert (got[..., 3][mask] > 200).mean() > 0.95
        assert (got[..., 3][expected[..., 3] == 0] < 50).mean() > 0.95


def test_alpha_writer_refuses_other_containers_and_rgb_frames(tmp_path):
    with pytest.raises(ValueError, match=r"\.mov \(PNG, lossless\) or \.webm"):
        AlphaVideoWriter(tmp_path / "a.mp4", fps=25, size_hw=SIZE)
    with AlphaVideoWriter(tmp_path / "a.mov", fps=25, size_hw=SIZE) as writer:
        with pytest.raises(ValueError, match="expected uint8 RGBA"):
            writer.write(synthetic_frame(0, SIZE))
        writer.write(_rgba_frames(1, SIZE)[0])
