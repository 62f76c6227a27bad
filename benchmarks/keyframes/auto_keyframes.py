"""How many frames SAM ran on with ``--keyframes auto``, per model, on the clips of a
``tools/bench_quality.py`` run, and why it re-keyed.

Usage (from the repository root)::

    python benchmarks/keyframes/auto_keyframes.py demo,MODEL.safetensors WORK

``WORK`` is the ``--work`` folder of the quality run (its ``data-*`` clip set is used).
"""

from __future__ import annotations

import collections
import importlib.util
import sys
from pathlib import Path

from persam_video.config import load_config
from persam_video.eval.davis_dataset import DavisDataset
from persam_video.io import open_source
from persam_video.video import VideoTracker


def main(models: str, work: str) -> None:
    spec = importlib.util.spec_from_file_location("bench_quality", "tools/bench_quality.py")
    tool = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = tool  # dataclasses look their module up
    spec.loader.exec_module(tool)
    dataset = DavisDataset(next(Path(work).glob("data-*")))
    config = load_config("default").with_overrides(["keyframes.mode=auto"])
    for model in tool.model_refs(models.split(","), None, "cpu"):
        tracker = VideoTracker(model.load(), config)
        keys, total, reasons = 0, 0, collections.Counter()
        for seq in dataset.sequences:
            with open_source(dataset.frame_paths(seq)[0].parent) as source:
                for result in tracker.track(source, dataset.reference(seq)):
                    total += 1
                    keys += result.keyframe
                    if result.rekey is not None:
                        reasons[result.rekey] += 1
        print(f"{model.label} SAM on {keys}/{total} frames ({keys / total:.2f})", dict(reasons))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
