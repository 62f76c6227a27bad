"""Tests for persam_video.io.reader: files, folders, iterables, errors, truncation, memory."""

from __future__ import annotations

import gc
import shutil
import threading
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from persam_video.io import (
    Frame,
    VideoDecodeError,
    VideoReadError,
    open_source,
    probe,
)
from tests.video_factory import frame_times, make_video, synthetic_frame

SIZE = (64, 96)
ODD_SIZE = (63, 95)
MAX_MEAN_ABS_ERROR = 6.0  # lossy x264 at crf 20 on tiny synthetic frames


def _mean_abs_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, tuple[Path, list[np.ndarray]]]:
    folder = tmp_path_factory.mktemp("videos")
    specs = {
        "pal.mp4": dict(n_frames=30, size_hw=SIZE),
        "ntsc.mp4": dict(n_frames=30, size_hw=SIZE, fps=Fraction(30000, 1001)),
        "film.mov": dict(n_frames=24, size_hw=SIZE, fps=24, audio=True),
        "odd.mkv": dict(n_frames=20, size_hw=ODD_SIZE),
        "vfr.mp4": dict(n_frames=30, size_hw=SIZE, vfr=True),
        "vfr.mkv": dict(n_frames=30, size_hw=SIZE, vfr=True, audio=True),
        "vp9.webm": dict(n_frames=20, size_hw=SIZE, codec="libvpx-vp9"),
        "xvid.avi": dict(n_frames=20, size_hw=SIZE, codec="mpeg4"),
    }
    return {
        name: (folder / name, make_video(folder / name, **spec)) for name, spec in specs.items()
    }


def _read_all(source, **kwargs) -> list[Frame]:
    with open_source(source, **kwargs) as frames:
        return list(frames)


# -- video files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fps"),
    [
        ("pal.mp4", Fraction(25)),
        ("ntsc.mp4", Fraction(30000, 1001)),
        ("film.mov", Fraction(24)),
        ("odd.mkv", Fraction(25)),
        ("vp9.webm", Fraction(25)),
        ("xvid.avi", Fraction(25)),
    ],
)
def test_video_files_stream_every_frame_with_exact_metadata(videos, name, fps):
    path, written = videos[name]
    with open_source(path) as source:
        assert source.kind == "video" and source.path == path
        assert source.fps == fps and isinstance(source.fps, Fraction)
        assert source.size == written[0].shape[:2]
        assert source.num_frames == len(written)
        frames = list(source)
    assert [f.index for f in frames] == list(range(len(written)))
    for frame, expected, time in zip(frames, written, frame_times(len(written), fps), strict=True):
        assert frame.rgb.shape == (*written[0].shape[:2], 3) and frame.rgb.dtype == np.uint8
        assert frame.rgb.flags.c_contiguous
        assert _mean_abs_error(frame.rgb, expected) < MAX_MEAN_ABS_ERROR
        assert frame.time == pytest.approx(float(time), abs=1e-9)


def test_ntsc_times_are_exact_multiples_of_1001_over_30000(videos):
    frames = _read_all(videos["ntsc.mp4"][0])
    assert [f.time for f in frames] == [float(Fraction(1001 * i, 30000)) for i in range(30)]


@pytest.mark.parametrize("name", ["vfr.mp4", "vfr.mkv"])
def test_variable_frame_rate_times_come_from_the_stream(videos, name):
    path, written = videos[name]
    frames = _read_all(path)
    expected = [float(t) for t in frame_times(len(written), Fraction(25), vfr=True)]
    assert len(frames) == len(written)
    assert [f.time for f in frames] == pytest.approx(expected, abs=1e-6)
    gaps = np.diff([f.time for f in frames])
    assert gaps.max() == pytest.approx(3 * gaps.min())  # really irregular


def test_audio_presence_is_reported(videos):
    with open_source(videos["film.mov"][0]) as with_audio:
        assert with_audio.has_audio
    with open_source(videos["pal.mp4"][0]) as without:
        assert not without.has_audio
    info = probe(videos["film.mov"][0])
    assert info.audio_codec == "aac" and info.fps == 24 and info.num_frames == 24


@pytest.mark.parametrize("prefetch", [0, 1, 4])
def test_prefetch_does_not_change_frames(videos, prefetch):
    path, _ = videos["pal.mp4"]
    reference = _read_all(path, prefetch=0)
    frames = _read_all(path, prefetch=prefetch)
    assert len(frames) == len(reference)
    for a, b in zip(frames, reference, strict=True):
        assert a.index == b.index and a.time == b.time
        np.testing.assert_array_equal(a.rgb, b.rgb)


def test_close_mid_stream_stops_the_decoder_thread(videos):
    source = open_source(videos["pal.mp4"][0], prefetch=2)
    first = next(source)
    assert first.index == 0
    threads = [t for t in threading.enumerate() if t.name.startswith("persam-frames")]
    assert threads
    source.close()
    assert not any(t.is_alive() for t in threads if t is source._thread)
    assert list(source) == []


# -- folders ----------------------------------------------------------------------------


def _write_folder(folder: Path, names: list[str], size_hw=SIZE) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    for index, name in enumerate(names):
        frame = synthetic_frame(index, size_hw)
        Image.fromarray(frame).save(folder / name)
        frames.append(frame)
    return frames


def test_folder_frames_are_naturally_sorted_and_timed(tmp_path):
    names = ["10.png", "2.png", "1.png", "frame_9.png"]
    written = dict(zip(names, _write_folder(tmp_path / "seq", names), strict=True))
    (tmp_path / "seq" / "notes.txt").write_text("ignored")
    (tmp_path / "seq" / ".hidden.png").write_bytes(b"ignored")
    with open_source(tmp_path / "seq", fps=Fraction(24000, 1001), prefetch=0) as source:
        assert source.kind == "folder" and source.num_frames == 4 and source.size == SIZE
        assert source.fps == Fraction(24000, 1001)
        assert source.time_base == Fraction(1001, 24000)
        frames = list(source)
    order = ["1.png", "2.png", "10.png", "frame_9.png"]
    for frame, name in zip(frames, order, strict=True):
        np.testing.assert_array_equal(frame.rgb, written[name])  # PNG is lossless
    assert [f.time for f in frames] == [float(Fraction(1001 * i, 24000)) for i in range(4)]


def test_davis_style_jpeg_folder_without_fps(tmp_path):
    folder = tmp_path / "JPEGImages" / "480p" / "bear"
    names = [f"{i:05d}.jpg" for i in range(12)]
    written = _write_folder(folder, names)
    with open_source(folder) as source:
        assert source.fps is None and source.time_base is None
        frames = list(source)
    assert [f.index for f in frames] == list(range(12))
    assert all(f.time is None for f in frames)
    assert _mean_abs_error(frames[7].rgb, written[7]) < MAX_MEAN_ABS_ERROR


def test_empty_folder_is_refused(tmp_path):
    (tmp_path / "readme.txt").write_text("no frames here")
    with pytest.raises(VideoReadError, match="no image frames") as info:
        open_source(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_folder_with_mixed_sizes_names_the_odd_frame(tmp_path):
    _write_folder(tmp_path, ["0.png", "1.png"])
    _write_folder(tmp_path / "x", ["2.png"], size_hw=(32, 32))
    shutil.move(tmp_path / "x" / "2.png", tmp_path / "2.png")
    with pytest.raises(VideoReadError, match=r"2\.png: frame is \(32, 32\)"):
        open_source(tmp_path)


# -- iterables --------------------------------------------------------------------------


def test_generator_source_with_fps():
    written = [synthetic_frame(i, ODD_SIZE) for i in range(5)]
    with open_source((f for f in written), fps=10, prefetch=2) as source:
        assert source.kind == "iterable" and source.size == ODD_SIZE
        assert source.num_frames is None and source.fps == 10
        frames = list(source)
    assert [f.time for f in frames] == [0.0, 0.1, 0.2, 0.3, 0.4]
    for frame, expected in zip(frames, written, strict=True):
        np.testing.assert_array_equal(frame.rgb, expected)


def test_array_stack_and_non_contiguous_frames():
    stack = np.stack([synthetic_frame(i, SIZE) for i in range(3)])
    frames = _read_all(stack[:, :, ::-1])  # mirrored views are not contiguous
    assert len(frames) == 3 and all(f.rgb.flags.c_contiguous for f in frames)
    np.testing.assert_array_equal(frames[2].rgb, stack[2, :, ::-1])
    with open_source(stack) as source:
        assert source.num_frames == 3


@pytest.mark.parametrize("prefetch", [0, 3])
def test_bad_frame_in_iterable_raises_after_the_good_ones(prefetch):
    def frames():
        for i in range(4):
            yield synthetic_frame(i, SIZE)
        yield synthetic_frame(4, SIZE).astype(np.float32)
        yield synthetic_frame(5, SIZE)

    got = []
    with pytest.raises(VideoReadError, match="frame 4: got float32") as info:
        for frame in open_source(frames(), prefetch=prefetch):
            got.append(frame.index)
    assert got == [0, 1, 2, 3]
    assert "(H, W, 3) uint8 RGB" in str(info.value)


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([], "empty"),
        ([np.zeros((8, 8), dtype=np.uint8)], "expected \\(H, W, 3\\) uint8 RGB"),
        ([np.zeros((8, 8, 4), dtype=np.uint8)], "expected \\(H, W, 3\\) uint8 RGB"),
        ([[[1, 2, 3]]], "expected a numpy array"),
    ],
)
def test_bad_iterables_are_refused_at_open(frames, message):
    with pytest.raises(VideoReadError, match=message):
        open_source(frames)


def test_frame_of_other_size_in_iterable():
    frames = [synthetic_frame(0, SIZE), synthetic_frame(1, ODD_SIZE)]
    with pytest.raises(VideoReadError, match="frame 1: size"):
        _read_all(frames)


# -- bad inputs -------------------------------------------------------------------------


def test_bad_paths_raise_one_line_read_errors(tmp_path, videos):
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a video\n" * 20)
    image = tmp_path / "frame.png"
    Image.fromarray(synthetic_frame(0, SIZE)).save(image)
    cases = [
        (tmp_path / "missing.mp4", "no such file"),
        (text, "not a video file"),
        (image, "single image"),
    ]
    for path, message in cases:
        with pytest.raises(VideoReadError, match=message) as info:
            open_source(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(
        VideoReadError, match=r"frame rate \(--fps\) applies to folders of frames only"
    ):
        open_source(videos["pal.mp4"][0], fps=25)
    with pytest.raises(VideoReadError, match="prefetch"):
        open_source(videos["pal.mp4"][0], prefetch=-1)
    with pytest.raises(VideoReadError, match="expected a video path"):
        open_source(42)


def test_audio_only_file_is_refused(tmp_path):
    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=48000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), "fltp", "mono")
        frame.sample_rate, frame.pts = 48000, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    with pytest.raises(VideoReadError, match="no video stream"):
        open_source(path)


# -- truncated and corrupt files --------------------------------------------------------


def _cut(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    out = path.with_name(f"cut_{path.name}")
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def _collect_until_error(path: Path, prefetch: int) -> tuple[list[int], VideoDecodeError | None]:
    indices: list[int] = []
    try:
        for frame in open_source(path, prefetch=prefetch):
            indices.append(frame.index)
    except VideoDecodeError as error:
        return indices, error
    return indices, None


@pytest.mark.parametrize(
    ("name", "faststart"), [("long.mkv", False), ("long.mp4", True), ("long.avi", False)]
)
@pytest.mark.parametrize("prefetch", [0, 4])
def test_truncated_file_yields_its_frames_then_raises(tmp_path, name, faststart, prefetch):
    original = tmp_path / name
    codec = "mpeg4" if name.endswith(".avi") else "libx264"
    make_video(original, n_frames=100, size_hw=SIZE, codec=codec, faststart=faststart)
    indices, error = _collect_until_error(original, prefetch)
    assert error is None and indices == list(range(100))

    truncated = _cut(original, 0.6)
    indices, error = _collect_until_error(truncated, prefetch)
    assert error is not None
    assert 30 < len(indices) < 80 and indices == list(range(len(indices)))
    assert error.frame_index == len(indices)
    message = str(error)
    assert str(truncated) in message and f"frame {len(indices)}" in message
    assert "truncated" in message and "\n" not in message


def test_truncated_mp4_without_index_cannot_be_opened(tmp_path):
    original = tmp_path / "rec.mp4"
    make_video(original, n_frames=40, size_hw=SIZE)  # index (moov) written last
    with pytest.raises(VideoReadError, match="not a video file"):
        open_source(_cut(original, 0.6))


def _overwrite_packets(path: Path, packet_indices: list[int]) -> Path:
    """Copy of ``path`` whose given video packets (decode order) are zeroed out."""
    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    data = bytearray(path.read_bytes())
    for index in packet_indices:
        pos, size = packets[index]
        data[pos : pos + size] = bytes(size)
    out = path.with_name(f"damaged_{path.name}")
    out.write_bytes(bytes(data))
    return out


@pytest.fixture(scope="module")
def intra_video(tmp_path_factory) -> Path:
    """40 frames, every frame a keyframe, so a damaged packet affects only itself."""
    path = tmp_path_factory.mktemp("intra") / "intra.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width = SIZE
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = 1
        stream.options = {"preset": "ultrafast"}
        for i in range(40):
            frame = av.VideoFrame.from_ndarray(synthetic_frame(i, SIZE), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def test_undecodable_last_frame_is_end_of_stream(intra_video):
    damaged = _overwrite_packets(intra_video, [39])
    for _ in range(2):  # decord's own failure point is racy; the result must not be
        indices, error = _collect_until_error(damaged, prefetch=4)
        assert error is None and indices == list(range(39))


def test_undecodable_middle_frame_raises_at_that_frame(intra_video):
    damaged = _overwrite_packets(intra_video, [20])
    reference = _read_all(intra_video)
    for _ in range(2):
        frames: list[Frame] = []
        with pytest.raises(VideoDecodeError, match="cannot decode frame 20") as info:
            for frame in open_source(damaged):
                frames.append(frame)
        assert info.value.frame_index == 20 and len(frames) == 20
        for got, expected in zip(frames, reference, strict=False):
            np.testing.assert_array_equal(got.rgb, expected.rgb)
            assert got.time == expected.time


# -- memory -----------------------------------------------------------------------------


GC_EVERY_FRAMES = 100


#: Frames the reader may decode ahead in the memory test.
PREFETCH = 4


def _peak_decode_bytes(path: Path) -> int:
    """Peak traced Python/numpy memory while streaming ``path``.

    decord's ctypes layer leaves ~100 bytes of cyclic garbage per frame, which the cyclic GC
    reclaims whenever it runs; collecting regularly makes the measurement count only what the
    source really holds on to.
    """
    gc.collect()
    tracemalloc.start()
    try:
        for frame in open_source(path, prefetch=PREFETCH):
            if frame.index % GC_EVERY_FRAMES == 0:
                gc.collect()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


@pytest.mark.slow
def test_memory_does_not_grow_with_video_length(tmp_path):
    size_hw = (128, 192)  # frames large enough that small per-frame bookkeeping is noise
    short, long = tmp_path / "short.mp4", tmp_path / "long.mp4"
    make_video(short, n_frames=50, size_hw=size_hw)
    make_video(long, n_frames=500, size_hw=size_hw)
    _read_all(short)  # warm up imports and caches outside tracemalloc
    peak_short = _peak_decode_bytes(short)
    peak_long = _peak_decode_bytes(long)
    frame_bytes = size_hw[0] * size_hw[1] * 3
    # Holding all 500 frames would take 500 * frame_bytes (37 MB); streaming keeps a few
    # (prefetch queue + one being decoded + one with the caller). How full the queue gets
    # depends on thread timing, so the long video may hold up to a full queue more.
    assert peak_long < peak_short + (PREFETCH + 2) * frame_bytes
    assert peak_long < 20 * frame_bytes


def test_16_bit_frames_are_scaled_not_clipped(tmp_path):
    """PIL's own RGB conversion clips 16-bit values, so most frames read as pure white."""
    folder = tmp_path / "frames16"
    folder.mkdir()
    ramp = np.linspace(0, 65535, 48 * 64).reshape(48, 64).astype(np.uint16)
    for i in range(3):
        Image.fromarray(ramp).save(folder / f"{i:03d}.png")
    with open_source(folder) as frames:
        rgb = [f.rgb for f in frames]
    assert len(rgb) == 3 and rgb[0].dtype == np.uint8
    expected = np.round(ramp * (255 / 65535)).astype(np.uint8)
    np.testing.assert_array_equal(rgb[0][..., 0], expected)
    assert 100 < rgb[0].mean() < 155  # a ramp, not white


@pytest.mark.parametrize(
    "name,text",
    [
        ("list.m3u8", "#EXTM3U\n#EXTINF:1,\n../secret.ts\n"),
        ("innocent.mp4", "#EXTM3U\nfile:///etc/passwd\n"),
        ("concat.txt", "ffconcat version 1.0\nfile 'other.mp4'\n"),
    ],
)
def test_playlists_are_refused_before_ffmpeg_follows_them(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(VideoReadError, match="is a playlist") as info:
        open_source(path)
    assert "\n" not in str(info.value)
