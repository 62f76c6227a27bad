"""Where to annotate: the frame where each object is largest (tracked both ways) versus frame 0.

For every model and every held-out procedural clip (the same clip sets as
``tools/bench_quality.py``), the ``default`` preset runs twice through
:class:`~persam_video.video.session.VideoSession`:

* ``frame 0``: each object's ground-truth mask on frame 0, tracked forward (what ``track
  --mask`` does);
* ``largest frame``: each object's ground-truth mask on the frame where its ground-truth area is
  largest, tracked forward and backward from there (``track --mask M@N``).

Both are scored with the DAVIS measures (``persam_video.eval``; frame 0 and the last frame are
not scored, as in DAVIS; the annotated frame of ``largest frame`` is given, which is the point of
choosing it). Prints J&F per model and mode, the difference paired over clips with its standard
error (clustered over a clip's objects), and the mean over models; ``--json`` writes them.

Usage::

    python tools/bench_prompts.py --models demo,benchmarks/models/suite-seed1.safetensors \\
        --families all --clips-per-family 2 --json bench_prompts.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_quality as bq

from persam_video.config import load_config
from persam_video.eval.davis_dataset import DavisDataset
from persam_video.eval.evaluate import evaluate_davis
from persam_video.io import write_label_png
from persam_video.labels import BACKGROUND_ID, VOID_ID
from persam_video.runtime import apply_threads, choose_threads
from persam_video.video import VideoTracker
from persam_video.video.session import VideoSession, merge_labels

MODES = ("frame 0", "largest frame")
BASE_MODE = "frame 0"
PRESET = "default"


def largest_frames(dataset: DavisDataset, seq: str) -> dict[int, tuple[int, np.ndarray]]:
    """Per object id of the sequence: (frame where its ground truth is largest, that mask)."""
    best: dict[int, tuple[int, int, np.ndarray]] = {}
    for index, path in enumerate(dataset.annotation_paths(seq)):
        labels = dataset.load_annotation(path)
        for obj_id in np.unique(labels):
            if obj_id in (BACKGROUND_ID, VOID_ID):
                continue
            area = int((labels == obj_id).sum())
            if obj_id not in best or area > best[obj_id][1]:
                best[int(obj_id)] = (index, area, labels == obj_id)
    return {obj_id: (index, mask) for obj_id, (index, _, mask) in best.items()}


def run_mode(tracker: VideoTracker, dataset: DavisDataset, mode: str, out: Path) -> None:
    """Track every sequence in ``mode`` and write DAVIS-layout result PNGs under ``out``."""
    for seq in dataset.sequences:
        paths = dataset.frame_paths(seq)
        folder = out / seq
        folder.mkdir(parents=True, exist_ok=True)
        session = VideoSession(tracker, dataset.frames_dir / seq)
        try:
            if mode == BASE_MODE:
                first = dataset.first_annotation(seq)
                session.add_labels(0, first)
                direction = "forward"
            else:
                for obj_id, (index, mask) in largest_frames(dataset, seq).items():
                    session.add_mask(index, obj_id, mask)
                direction = "both"
            labels: dict[int, np.ndarray] = {}
            for result in session.propagate(direction):
                earlier = labels.get(result.index)
                labels[result.index] = (
                    result.labels if earlier is None else merge_labels(earlier, result.labels)
                )
        finally:
            session.close()
        size = dataset.first_annotation(seq).shape
        for index, path in enumerate(paths):
            write_label_png(folder / f"{path.stem}.png", labels.get(index, np.zeros(size, "u1")))


def scores_of(dataset: DavisDataset, results: Path) -> list[dict[str, Any]]:
    report = evaluate_davis(dataset, results, progress=False)
    return [
        {"sequence": o.sequence, "object_id": o.object_id, "j": o.j.mean, "f": o.f.mean}
        for o in report.objects
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", default="demo", help="Comma-separated models (as bench_quality)."
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", default=None, help="Torch threads, N or auto.")
    parser.add_argument("--families", default="all", help="Clip families (as bench_quality).")
    parser.add_argument("--clips-per-family", type=int, default=2)
    parser.add_argument(
        "--frames", type=int, default=None, help="Frames per clip (default: the family's)."
    )
    parser.add_argument("--work", type=Path, default=Path("bench-prompts-work"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    apply_threads(choose_threads(args.threads))
    families = list(bq.FAMILIES) if args.families == "all" else bq.split_list([args.families])
    clips = [
        (family, bq.BENCHMARK_FIRST_SEED + i)
        for family in families
        for i in range(args.clips_per_family)
    ]
    dataset, data_key = bq.prepare_clips(args.work, clips, args.frames, progress=True)
    models = bq.model_refs(bq.split_list([args.models]), None, args.device)
    config = load_config(PRESET)
    report: dict[str, Any] = {"clips": len(dataset.sequences), "models": {}}
    began = time.perf_counter()
    for model in models:
        tracker = VideoTracker(model.load(), config)
        per_mode = {}
        for mode in MODES:
            out = args.work / "runs" / model.label / f"{mode.replace(' ', '_')}-{data_key[:12]}"
            run_mode(tracker, dataset, mode, out)
            per_mode[mode] = scores_of(dataset, out)
        report["models"][model.label] = per_mode
    report["seconds"] = time.perf_counter() - began
    print_table(report)
    if args.json:
        args.json.write_text(bq.compact_json(bq.rounded(summary(report))))
    return 0


def object_table(objects: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    jf = np.array([(o["j"] + o["f"]) / 2 for o in objects])
    _, clusters = np.unique([o["sequence"] for o in objects], return_inverse=True)
    return jf, clusters


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """Per model and mode J&F, the paired difference to frame 0 with its s.e., the mean."""
    out: dict[str, Any] = {"clips": report["clips"], "seconds": report["seconds"], "models": {}}
    diffs = []
    for label, per_mode in report["models"].items():
        base, clusters = object_table(per_mode[BASE_MODE])
        other, _ = object_table(per_mode["largest frame"])
        delta, se = bq.clustered_mean(other - base, clusters)
        diffs.append(other - base)
        out["models"][label] = {
            "frame 0": float(base.mean()),
            "largest frame": float(other.mean()),
            "difference": delta,
            "difference_se": se,
        }
    if diffs:
        _, clusters = object_table(next(iter(report["models"].values()))[BASE_MODE])
        mean_delta, mean_se = bq.clustered_mean(np.mean(diffs, axis=0), clusters)
        out["mean"] = {
            "frame 0": float(np.mean([m["frame 0"] for m in out["models"].values()])),
            "largest frame": float(np.mean([m["largest frame"] for m in out["models"].values()])),
            "difference": mean_delta,
            "difference_se": mean_se,
        }
    return out


def print_table(report: dict[str, Any]) -> None:
    table = summary(report)
    print(f"{report['clips']} clips, {table['seconds']:.0f} s")
    print(f"{'model':<28} {'frame 0':>8} {'largest':>8}  difference (paired s.e.)")
    rows = [
        *table["models"].items(),
        *([("mean over models", table["mean"])] if "mean" in table else []),
    ]
    for label, row in rows:
        print(
            f"{label:<28} {row['frame 0']:>8.3f} {row['largest frame']:>8.3f}  "
            f"{row['difference']:+.3f} ± {row['difference_se']:.3f}"
        )


if __name__ == "__main__":
    sys.exit(main())
