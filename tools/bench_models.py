"""Speed of each model, side by side in one run: ``track`` end to end on the same generated clip.

For each model (random weights at the real size: timing does not depend on weight values), each
object count, each keyframe setting and each encoder precision (int8 where the encoder is SAM's
ViT), it runs ``track_to_folder`` (mask PNGs only) on the same 854x480 procedural clip and prints
frames/s (median of the repeats, with their range), the ratio to the first model's frames/s in
float32 in the same setting, and the encoder's share of the time (the image encoder timed alone
on the same frames, over the time a frame takes with SAM on every frame: the rest is the decoder
passes and the tracker's other work). The models are alternated within each repeat, so a busy
machine slows them alike.

Usage (from the repository root)::

    python tools/bench_models.py --models vit_b,mobile_sam,sam_hq_vit_b,sam_hq_vit_tiny \\
        --frames 4 --repeats 3 --json benchmarks/models-cpu.json

It writes the JSON after every measurement, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from segment_anything import sam_model_registry  # noqa: E402

from persam_video.apps.track import OutputOptions, track_to_folder  # noqa: E402
from persam_video.config import load_config  # noqa: E402
from persam_video.model.hq import HQ_MODELS, build_hq_sam  # noqa: E402
from persam_video.model.mobile import MOBILE_SAM_NAME, build_mobile_sam, is_vit_encoder  # noqa: E402
from persam_video.persam.encoder import FrameEncoder  # noqa: E402
from persam_video.runtime import apply_threads  # noqa: E402
from persam_video.synthetic.clips import make_clip  # noqa: E402
from persam_video.video.tracker import VideoTracker  # noqa: E402

CLIP_SEED = 1000
MASKS_ONLY = OutputOptions(overlay=False, report=False)


def random_model(name: str) -> Any:
    """The architecture ``name`` with random weights (seeded), eval mode, on the CPU."""
    if name == MOBILE_SAM_NAME:
        return build_mobile_sam(seed=0)
    if name in HQ_MODELS:
        return build_hq_sam(name, seed=0)
    torch.manual_seed(0)
    return sam_model_registry[name](checkpoint=None).eval()


def first_labels(labels: np.ndarray, objects: int) -> np.ndarray:
    """The clip's first label map with only its first ``objects`` ids."""
    kept = np.where((labels > 0) & (labels <= objects), labels, 0)
    return kept.astype(np.uint8)


def timed_track(
    sam: Any, frames: list[np.ndarray], labels: np.ndarray, keyframes: str, precision: str
) -> float:
    """Seconds of one ``track_to_folder`` run (masks only) with ``--keyframes keyframes`` and
    ``--precision precision``."""
    overrides = (
        ["keyframes.mode=auto"] if keyframes == "auto" else [f"keyframes.interval={keyframes}"]
    )
    config = load_config("default").with_overrides(overrides)
    tracker = VideoTracker(sam, config, FrameEncoder(sam, precision=precision))
    with tempfile.TemporaryDirectory() as out:
        began = time.perf_counter()
        track_to_folder(
            tracker, frames, labels, Path(out) / "run", progress=False, options=MASKS_ONLY
        )
        return time.perf_counter() - began


def timed_encoder(sam: Any, frames: list[np.ndarray]) -> float:
    """Seconds per frame of the image encoder alone (as the tracker runs it)."""
    encoder = FrameEncoder(sam)
    began = time.perf_counter()
    for frame in frames:
        encoder.encode(frame)
    return (time.perf_counter() - began) / len(frames)


def summary(rows: list[dict[str, Any]], models: list[str]) -> list[dict[str, Any]]:
    """Per (precision, objects, keyframes, model): median frames/s and range, ratio to the first
    model in float32 in the same setting (the encoder's share: float32, keyframes 1)."""
    table = []
    keys = sorted(
        {(r["precision"], r["objects"], r["keyframes"]) for r in rows if r["kind"] == "track"},
        key=lambda key: (key[0] != "float32", key[0], key[1], key[2]),
    )
    encoder = {
        m: statistics.median(
            r["seconds_per_frame"] for r in rows if r["kind"] == "encoder" and r["model"] == m
        )
        for m in models
        if any(r["kind"] == "encoder" and r["model"] == m for r in rows)
    }

    def speeds_of(model: str, precision: str, objects: int, keyframes: str) -> list[float]:
        wanted = (model, precision, objects, keyframes)
        return [
            r["frames_per_s"]
            for r in rows
            if r["kind"] == "track"
            and (r["model"], r["precision"], r["objects"], r["keyframes"]) == wanted
        ]

    for precision, objects, keyframes in keys:
        first = speeds_of(models[0], "float32", objects, keyframes)
        base = statistics.median(first) if first else None
        for model in models:
            speeds = speeds_of(model, precision, objects, keyframes)
            if not speeds:
                continue
            median = statistics.median(speeds)
            base = base or median
            entry = {
                "model": model,
                "precision": precision,
                "objects": objects,
                "keyframes": keyframes,
                "frames_per_s": round(median, 3),
                "min": round(min(speeds), 3),
                "max": round(max(speeds), 3),
                "runs": len(speeds),
                "ratio_to_first": round(median / base, 2),
            }
            if keyframes == "1" and precision == "float32" and model in encoder:
                entry["encoder_share"] = round(encoder[model] * median, 2)
            table.append(entry)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=f"vit_b,{MOBILE_SAM_NAME}")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--objects", default="1,2")
    parser.add_argument("--keyframes", default="1,auto")
    parser.add_argument(
        "--precisions",
        default="float32,int8",
        help="encoder precisions (int8 only where the encoder is SAM's ViT; skipped elsewhere)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",")]
    counts = [int(n) for n in args.objects.split(",")]
    settings = [k.strip() for k in args.keyframes.split(",")]
    precisions = [p.strip() for p in args.precisions.split(",")]
    apply_threads(args.threads)
    clip = make_clip(CLIP_SEED, size_hw=(480, 854), n_frames=args.frames, n_objects=max(counts))
    frames = [np.asarray(f) for f in clip.frames]
    sams = {name: random_model(name) for name in models}
    rows: list[dict[str, Any]] = []
    facts = {
        "machine": platform.processor() or platform.machine(),
        "threads": args.threads,
        "size_hw": [480, 854],
        "frames": args.frames,
        "torch": torch.__version__,
    }

    def record(row: dict[str, Any]) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.json is not None:
            args.json.write_text(
                json.dumps({"facts": facts, "rows": rows, "table": summary(rows, models)}, indent=1)
            )

    for repeat in range(args.repeats):
        for name in models:
            record(
                {
                    "kind": "encoder",
                    "model": name,
                    "repeat": repeat,
                    "seconds_per_frame": round(timed_encoder(sams[name], frames), 3),
                }
            )
        for objects in counts:
            labels = first_labels(np.asarray(clip.labels[0]), objects)
            for keyframes in settings:
                for precision in precisions:
                    for name in models:
                        if precision == "int8" and not is_vit_encoder(sams[name]):
                            continue
                        seconds = timed_track(sams[name], frames, labels, keyframes, precision)
                        record(
                            {
                                "kind": "track",
                                "model": name,
                                "precision": precision,
                                "repeat": repeat,
                                "objects": objects,
                                "keyframes": keyframes,
                                "seconds": round(seconds, 3),
                                "frames_per_s": round(len(frames) / seconds, 4),
                            }
                        )
    print(
        "model            precision objects keyframes  frames/s (min-max)      x first  "
        "encoder share"
    )
    for entry in summary(rows, models):
        share = entry.get("encoder_share")
        print(
            f"{entry['model']:16} {entry['precision']:9} {entry['objects']:7} "
            f"{entry['keyframes']:9}  "
            f"{entry['frames_per_s']:7.3f} ({entry['min']:.3f}-{entry['max']:.3f})  "
            f"{entry['ratio_to_first']:7.2f}  {'' if share is None else f'{share:.2f}'}"
        )


if __name__ == "__main__":
    main()
