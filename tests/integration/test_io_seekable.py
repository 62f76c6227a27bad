"""Random access and reverse-chunk reading (io.seekable) agree with the streaming reader."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from persam_video.io import VideoReadError, open_source
from persam_video.io.seekable import open_seekable
from tests.video_factory import make_video

SIZE = (48, 64)
N_FRAMES = 37


@pytest.fixture(scope="module", params=[("cfr.mp4", False), ("vfr.mkv", True), ("vfr.mp4", True)])
def video(request, tmp_path_factory):
    name, vfr = request.param
    path = tmp_path_factory.mktemp("seek") / name
    make_video(path, n_frames=N_FRAMES, size_hw=SIZE, fps=Fraction(30000, 1001), vfr=vfr)
    with open_source(path) as frames:
        streamed = list(frames)
    return path, streamed


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_backward_chunks_give_the_streamed_frames(video, decoder):
    path, streamed = video
    with open_seekable(path) as frames:
        if decoder == "pyav":
            frames._decord = None  # as when decord cannot open or read the file
        back = list(frames.backward(N_FRAMES - 1, 0, chunk=5))
        assert frames.num_frames == N_FRAMES
    assert [f.index for f in back] == list(range(N_FRAMES - 1, -1, -1))
    for frame in back:
        expected = streamed[frame.index]
        assert frame.time == pytest.approx(expected.time, abs=1e-9)
        np.testing.assert_array_equal(frame.rgb, expected.rgb)


def test_read_and_forward_by_index(video):
    path, streamed = video
    with open_seekable(path) as frames:
        np.testing.assert_array_equal(frames.read(17).rgb, streamed[17].rgb)
        assert [f.index for f in frames.forward(30)] == list(range(30, N_FRAMES))
        assert [f.index for f in frames.backward(8, 3, chunk=4)] == [8, 7, 6, 5, 4, 3]
        with pytest.raises(VideoReadError, match=f"frame 99 is beyond the video: .* {N_FRAMES}"):
            frames.read(99)
        with pytest.raises(VideoReadError, match="integer >= 0"):
            frames.read(-1)


def test_folders_and_sequences(tmp_path):
    arrays = [np.full((*SIZE, 3), i * 10, np.uint8) for i in range(6)]
    for i, rgb in enumerate(arrays):
        Image.fromarray(rgb).save(tmp_path / f"{i}.png")
    for source, fps in ((tmp_path, 24), (arrays, None), (np.stack(arrays), None)):
        with open_seekable(source, fps=fps) as frames:
            assert frames.num_frames == 6 and frames.size == SIZE
            back = list(frames.backward(5, chunk=4))
            assert [int(f.rgb[0, 0, 0]) for f in back] == [50, 40, 30, 20, 10, 0]
            assert [f.index for f in frames.forward(4)] == [4, 5]
            assert frames.read(2).time == (2 / 24 if fps else None)
    with pytest.raises(VideoReadError, match="no random access"):
        open_seekable(iter(arrays))


def test_backward_holds_one_chunk_at_a_time():
    """The reverse walk reads chunks from the end; it never asks for more than ``chunk``."""
    asked: list[range] = []

    class Recording(list):
        def __getitem__(self, index):
            asked.append(index)
            return super().__getitem__(index)

    frames = Recording(np.zeros((*SIZE, 3), np.uint8) for _ in range(100))
    with open_seekable(frames) as source:
        asked.clear()  # opening looks at frame 0 for the size
        walked = source.backward(99, chunk=8)
        for _ in range(10):  # the first 10 frames need the last two chunks only
            next(walked)
    assert min(asked) == 99 - 15 and len(asked) == 16
