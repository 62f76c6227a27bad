"""The Python API of the tracker: generators of frames, streaming memory."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from persam_video.config import PerSAMConfig
from persam_video.video.tracker import VideoTracker
from tests.helpers import REPO_ROOT
from tests.video_factory import synthetic_frame, synthetic_labels

SIZE = (48, 64)


def frames(n: int):
    for i in range(n):
        yield synthetic_frame(i, SIZE)


def test_tracker_on_a_generator(tiny_sam):
    tracker = VideoTracker(tiny_sam, PerSAMConfig.paper_video())
    results = list(tracker.track(frames(6), synthetic_labels(0, SIZE)))
    assert [r.index for r in results] == list(range(6))
    assert all(r.labels.shape == SIZE and r.labels.dtype == np.uint8 for r in results)
    assert [o.obj_id for o in results[3].objects] == [1, 2]
    np.testing.assert_array_equal(results[0].labels, synthetic_labels(0, SIZE))


PEAK_RSS_SCRIPT = """
import resource, sys
from persam_video.config import PerSAMConfig
from persam_video import VideoTracker, track_to_folder
from persam_video.model.spec import build_sam_from_spec
from persam_video.model import tiny_sam_spec
from tests.integration.test_tracker_api import SIZE, frames
from tests.video_factory import synthetic_labels

n, out = int(sys.argv[1]), sys.argv[2]
tracker = VideoTracker(build_sam_from_spec(tiny_sam_spec(), seed=0), PerSAMConfig())
track_to_folder(tracker, frames(n), synthetic_labels(0, SIZE), out, progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _peak_rss_kib(tmp_path, n: int) -> int:
    """Peak resident memory (KiB) of a fresh process tracking ``n`` frames to a folder."""
    root = REPO_ROOT
    out = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_SCRIPT, str(n), str(tmp_path / f"out{n}")],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
    )
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_memory_does_not_grow_with_video_length(tmp_path):
    """Peak RSS of the whole pipeline (track, write) for 1,000 frames is within 10% of 100."""
    short = _peak_rss_kib(tmp_path, 100)
    long = _peak_rss_kib(tmp_path, 1000)
    assert long < 1.10 * short, (short, long)
