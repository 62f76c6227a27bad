"""``persam-video demo``: the whole product offline, on a procedural clip with the demo model.

Generates a clip, writes it as ``input.mp4`` with ``first_mask.png``, runs the full ``track``
pipeline with the bundled demo model (a small SAM-architecture model trained on procedural
scenes, not SAM), and scores the result against the generated ground truth (J&F, DAVIS
definitions) in ``metrics.json``, next to a static baseline that copies the first mask.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from persam_video.apps.track import (
    MASKS_DIR,
    OutputOptions,
    TrackSummary,
    output_paths,
    track_to_folder,
)
from persam_video.atomic import run_folder, write_text
from persam_video.eval.evaluate import evaluate_sequence
from persam_video.eval.report import DavisReport, ObjectScores
from persam_video.io import read_mask
from persam_video.synthetic import make_clip
from persam_video.synthetic.clips import Clip
from persam_video.synthetic.export import write_clip_video
from persam_video.video import VideoTracker
from persam_video.video.engine import Engine

METRICS_NAME = "metrics.json"
#: The command recorded as the owner of a demo folder, and the clip files it writes there.
DEMO_COMMAND = "demo"
CLIP_NAMES = ("input.mp4", "first_mask.png")


@dataclass
class DemoResult:
    """Where the demo wrote things and how well it did."""

    summary: TrackSummary
    video: Path
    first_mask: Path
    metrics: dict[str, Any]


def clip_scores(
    name: str, gt: list[np.ndarray], pred: list[np.ndarray], object_ids: list[int]
) -> dict[str, float]:
    """DAVIS global metrics (J&F-Mean, J-Mean, ...) of one clip's (H, W) label maps."""
    scores = evaluate_sequence(np.stack(gt), np.stack(pred), object_ids)
    objects = [
        ObjectScores.from_frames(name, obj_id, scores.j[row], scores.f[row])
        for row, obj_id in enumerate(scores.object_ids)
    ]
    return DavisReport(tuple(objects)).global_metrics


def run_demo(
    tracker: Engine | VideoTracker,
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    progress: bool = True,
    metadata: dict[str, Any] | None = None,
) -> DemoResult:
    """Generate clip ``seed`` (test split), track it into ``out_dir``, write ``metrics.json``."""
    clip = make_clip(seed, split="test")
    names = [path.name for path in output_paths(out_dir)] + [*CLIP_NAMES, METRICS_NAME]
    with run_folder(out_dir, DEMO_COMMAND, names) as claim:
        claim.record(pending=CLIP_NAMES)
        video, first_mask = write_clip_video(clip, claim.folder)
        summary = track_to_folder(
            tracker,
            video,
            first_mask,
            claim.folder,
            options=OutputOptions(masked_video="cutout", draw_points=True),
            progress=progress,
            metadata=metadata,
            claim=claim,
        )
        metrics = _metrics(clip, seed, claim.folder)
        claim.record(pending=[METRICS_NAME])
        write_text(claim.folder / METRICS_NAME, json.dumps(metrics, indent=1))
    return DemoResult(summary, video, first_mask, metrics)


def _metrics(clip: Clip, seed: int, out: Path) -> dict[str, Any]:
    """The demo's scores: its masks against the clip's truth, and the static baseline's."""
    pred = [read_mask(p) for p in sorted((out / MASKS_DIR).glob("*.png"))]
    ids = list(clip.object_ids)
    metrics = {
        "clip": {"name": clip.name, "seed": seed, "frames": len(clip), "objects": ids},
        "tracked": clip_scores(clip.name, clip.labels, pred, ids),
        "static_baseline": clip_scores(clip.name, clip.labels, [clip.labels[0]] * len(clip), ids),
        "note": "demo model trained on procedural scenes; not SAM",
    }
    return metrics
