"""Tracking both ways from a middle annotation keeps memory flat (the RSS test of
test_tracker_api, on the prompted path: reverse chunks, out-of-order PNGs, rendering pass), on
PerSAM's engine and on the memory engine (a tiny random SAM 2 model at 128 px)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT

PEAK_RSS_SCRIPT = """
import resource, sys
from pathlib import Path
from persam_video.config import PerSAMConfig
from persam_video import VideoTracker
from persam_video.model.spec import build_sam_from_spec
from persam_video.apps.prompted import PromptSpec, track_prompts_to_folder
from persam_video.io import write_label_png
from persam_video.model import tiny_sam_spec
from tests.video_factory import make_video, synthetic_labels

n, work, folder = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
work.mkdir()
size = (48, 64)
make_video(work / "in.mp4", n_frames=n, size_hw=size)
write_label_png(work / "m.png", synthetic_labels(n // 2, size))
if folder == "persam":
    tracker = VideoTracker(build_sam_from_spec(tiny_sam_spec(), seed=0), PerSAMConfig())
else:
    from persam_video.memory.engine import MemoryEngine
    from persam_video.memory.models import load_memory_model
    tracker = MemoryEngine(load_memory_model("sam2.1_hiera_tiny", folder))
spec = PromptSpec("mask", n // 2, path=str(work / "m.png"), text="m.png")
summary = track_prompts_to_folder(tracker, work / "in.mp4", [spec], work / "out", progress=False)
assert summary.frames == n, summary
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _peak_rss_kib(tmp_path, n: int, engine: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_SCRIPT, str(n), str(tmp_path / f"run{n}"), engine],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    )
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["persam", "memory"])
def test_memory_is_flat_with_a_middle_annotation(tmp_path, engine):
    """Peak RSS for 1,000 frames annotated on frame 500 is within 10% of 100 frames on 50."""
    if engine == "memory":
        pytest.importorskip("transformers", reason="transformers (the sam2 extra)")
        from persam_video.memory.models import save_random_model, tiny_config

        engine = str(save_random_model(tmp_path / "sam2", tiny_config(image_size=128), seed=2))
    short = _peak_rss_kib(tmp_path, 100, engine)
    long = _peak_rss_kib(tmp_path, 1000, engine)
    assert long < 1.10 * short, (short, long)
