"""The tracker's keyframe loop: N=1 is the plain loop, carried frames follow the flow, auto
re-keys on a scene cut, memory stays flat."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest

from persam_video.config import PerSAMConfig
from persam_video.persam import Target
from persam_video.synthetic import make_clip
from persam_video.video.tracker import VideoTracker
from tests.helpers import REPO_ROOT
from tests.unit.test_flow import SIZE, boxes, texture, view, within_one_pixel

#: The constructed clip moves by this much per frame (rows, columns).
STEP = (1, 2)


def shifting(seed: int, n: int, start: int = 0) -> list[np.ndarray]:
    """(H, W, 3) uint8 frames of one texture moving by STEP per frame."""
    image = texture(seed)
    return [
        np.repeat(view(image, STEP[0] * t, STEP[1] * t)[..., None], 3, axis=2)
        for t in range(start, start + n)
    ]


def config(*overrides: str) -> PerSAMConfig:
    return PerSAMConfig.default().with_overrides(list(overrides))


def test_interval_1_through_the_keyframe_loop_is_the_plain_loop(tiny_sam):
    """The keyframe loop with every frame a keyframe gives what the tracker gives without it."""
    frames, first = shifting(0, 6), boxes()
    plain = list(VideoTracker(tiny_sam, config()).track(frames, first))
    tracker = VideoTracker(tiny_sam, config("keyframes.interval=1"))

    def begin(rgb, index, time):
        return tracker.start(rgb, first, index=index, time=time)

    looped = list(tracker.track_keyframes(frames, begin))  # forced: N=1 skips the loop
    assert all(r.keyframe and r.rekey is None for r in looped)
    for a, b in zip(plain, looped, strict=True):
        np.testing.assert_array_equal(a.labels, b.labels)
        assert [(o.score, o.bbox, o.updated) for o in a.objects] == [
            (o.score, o.bbox, o.updated) for o in b.objects
        ]


def test_carried_frames_are_the_flow_propagated_masks(tiny_sam):
    """Every 4th frame through SAM; on the others the masks move with the known shift (1 px)."""
    results = list(
        VideoTracker(tiny_sam, config("keyframes.interval=4")).track(shifting(0, 10), boxes())
    )
    assert [r.index for r in results if r.keyframe] == [0, 4, 8]
    for before, now in itertools.pairwise(results):
        if now.keyframe:
            continue
        want = np.zeros_like(before.labels)
        want[STEP[0] :, STEP[1] :] = before.labels[: -STEP[0], : -STEP[1]]
        inside = np.zeros(want.shape, bool)  # the entering strip has no source: not compared
        inside[STEP[0] :, STEP[1] :] = True
        assert within_one_pixel(np.where(inside, now.labels, want), want), now.index
        for obj in now.objects:
            assert obj.propagated and np.isnan(obj.score) and not obj.updated
            assert obj.present == bool((now.labels == obj.obj_id).any())


def test_auto_re_keys_on_a_planted_scene_cut(tiny_sam):
    """From frame 6 a procedural scene replaces the texture. (A cut from one smooth noise
    texture to another is no test at the default 2.5 px: DIS warps noise into noise, and
    under a third of such a frame fails the check.)"""
    frames = shifting(0, 6) + make_clip(0, n_frames=4, size_hw=SIZE).frames
    tracker = VideoTracker(tiny_sam, config("keyframes.mode=auto", "keyframes.max_gap=50"))
    results = list(tracker.track(frames, boxes()))
    assert [r.keyframe for r in results[:7]] == [True] + [False] * 5 + [True]
    assert results[6].rekey == "flow"


def test_auto_re_keys_after_max_gap_frames(tiny_sam):
    tracker = VideoTracker(tiny_sam, config("keyframes.mode=auto", "keyframes.max_gap=3"))
    results = list(tracker.track(shifting(0, 7), boxes()))
    assert [r.index for r in results if r.keyframe] == [0, 3, 6]
    assert [r.rekey for r in results if r.keyframe] == [None, "gap", "gap"]


def test_saved_targets_with_keyframes(tiny_sam):
    tracker = VideoTracker(tiny_sam, config("keyframes.interval=3"))
    frames = shifting(0, 7)
    feats = tracker.persam.encode(frames[0])
    target = Target(tracker.persam.embed(feats, boxes() == 1))
    results = list(tracker.track_targets(frames, [target]))
    assert [r.index for r in results if r.keyframe] == [0, 3, 6]


def test_keyframes_refuse_a_batching_encoder(tiny_sam):
    from persam_video.persam.encoder import FrameEncoder

    with pytest.raises(ValueError, match="--batch-frames 1"):
        VideoTracker(tiny_sam, config("keyframes.interval=2"), FrameEncoder(tiny_sam, batch_size=2))


PEAK_RSS_SCRIPT = """
import resource, sys
from persam_video.config import PerSAMConfig
from persam_video import VideoTracker, track_to_folder
from persam_video.model.spec import build_sam_from_spec
from persam_video.model import tiny_sam_spec
from tests.integration.test_tracker_api import SIZE, frames
from tests.video_factory import synthetic_labels

n, out = int(sys.argv[1]), sys.argv[2]
config = PerSAMConfig().with_overrides(["keyframes.interval=4"])
tracker = VideoTracker(build_sam_from_spec(tiny_sam_spec(), seed=0), config)
track_to_folder(tracker, frames(n), synthetic_labels(0, SIZE), out, progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _peak_rss_kib(tmp_path, n: int) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_SCRIPT, str(n), str(tmp_path / f"out{n}")],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    )
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_memory_is_flat_in_keyframe_mode(tmp_path):
    """Peak RSS with keyframes every 4th frame: 1,000 frames within 10% of 100."""
    short = _peak_rss_kib(tmp_path, 100)
    long = _peak_rss_kib(tmp_path, 1000)
    assert long < 1.10 * short, (short, long)
