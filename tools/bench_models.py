"""Speed of each model, side by side in one run: ``track`` end to end on the same generated clip.

For each model (random weights at the real size: timing does not depend on weight values), each
object count, each keyframe setting and each encoder precision (int8 where the encoder is SAM's
ViT; keyframes and int8 are PerSAM's, so memory trackers run with SAM on every frame in float32
only), it runs ``track_to_folder`` (mask PNGs only) on the same 854x480 procedural clip and prints
frames/s (median of the repeats, with their range), the ratio to the first model's frames/s in
float32 in the same setting, and the encoder's share of the time (the image encoder timed alone
on the same frames, over the time a frame takes with SAM on every frame: the rest is the decoder
passes and the tracker's other work). The models are alternated within each repeat, so a busy
machine slows them alike.

Usage (from the repository root)::

    python tools/bench_models.py --models vit_b,mobile_sam,sam_hq_vit_b,sam_hq_vit_tiny \\
        --frames 4 --repeats 3 --json benchmarks/models-cpu.json
    python tools/bench_models.py --models vit_b,mobile_sam,sam2.1_hiera_tiny,sam2.1_hiera_small,\\
sam2.1_hiera_base_plus,sam2.1_hiera_large,edgetam,sam3_tracker --objects 1,3 --keyframes 1 \\
        --precisions float32 --frames 4 --repeats 1 --json benchmarks/memory-models-cpu.json

The memory trackers are built at the sizes of the official checkpoints (:func:`full_size_config`:
SAM 2.1's Hiera-T/S/B+/L as in the official configs, EdgeTAM's RepViT-M1, the SAM 3 tracker's
defaults in transformers); their parameter counts are printed and recorded.

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
from persam_video.memory.engine import MemoryEngine  # noqa: E402
from persam_video.memory.models import (  # noqa: E402
    EDGETAM_VIDEO,
    MEMORY_MODELS,
    SAM2_VIDEO,
    MemoryModel,
    is_memory_model,
    transformers_module,
)
from persam_video.memory.models import random_model as random_memory_model  # noqa: E402
from persam_video.model.hq import HQ_MODELS, build_hq_sam  # noqa: E402
from persam_video.model.mobile import MOBILE_SAM_NAME, build_mobile_sam, is_vit_encoder  # noqa: E402
from persam_video.persam.encoder import FrameEncoder  # noqa: E402
from persam_video.runtime import apply_threads  # noqa: E402
from persam_video.synthetic.clips import make_clip  # noqa: E402
from persam_video.video.tracker import VideoTracker  # noqa: E402

CLIP_SEED = 1000
MASKS_ONLY = OutputOptions(overlay=False, report=False)


#: SAM 2.1's Hiera image encoders (official configs): embed dim, heads, blocks per stage, global
#: attention blocks, window sizes per stage, background size of the window position embedding.
HIERA = {
    "sam2.1_hiera_tiny": (96, 1, [1, 2, 7, 2], [5, 7, 9], [8, 4, 14, 7], [7, 7]),
    "sam2.1_hiera_small": (96, 1, [1, 2, 11, 2], [7, 10, 13], [8, 4, 14, 7], [7, 7]),
    "sam2.1_hiera_base_plus": (112, 2, [2, 3, 16, 3], [12, 16, 20], [8, 4, 14, 7], [14, 14]),
    "sam2.1_hiera_large": (144, 2, [2, 6, 36, 4], [23, 33, 43], [8, 4, 16, 8], [7, 7]),
}


def full_size_config(name: str) -> Any:
    """The transformers config of memory tracker ``name`` at its official size."""
    tf = transformers_module()
    family = MEMORY_MODELS[name].family
    if family == SAM2_VIDEO:
        dim, heads, blocks, global_blocks, windows, background = HIERA[name]
        hiera = tf.Sam2HieraDetConfig(
            hidden_size=dim,
            num_attention_heads=heads,
            blocks_per_stage=blocks,
            embed_dim_per_stage=[dim * 2**i for i in range(4)],
            num_attention_heads_per_stage=[heads * 2**i for i in range(4)],
            window_size_per_stage=windows,
            global_attention_blocks=global_blocks,
            window_positional_embedding_background_size=background,
        )
        channels = [dim * 2**i for i in reversed(range(4))]
        vision = tf.Sam2VisionConfig(backbone_config=hiera, backbone_channel_list=channels)
        return tf.Sam2VideoConfig(vision_config=vision)
    if family == EDGETAM_VIDEO:
        backbone = tf.TimmWrapperConfig(
            architecture="repvit_m1",
            model_args={"in_chans": 3, "features_only": True, "out_indices": [0, 1, 2, 3]},
        )
        vision = tf.EdgeTamVisionConfig(
            backbone_config=backbone, backbone_channel_list=[384, 192, 96, 48]
        )
        return tf.EdgeTamVideoConfig(vision_config=vision)
    return tf.Sam3TrackerVideoConfig()


def random_model(name: str) -> Any:
    """The architecture ``name`` with random weights (seeded), eval mode, on the CPU."""
    if is_memory_model(name):
        return random_memory_model(full_size_config(name), name)
    if name == MOBILE_SAM_NAME:
        return build_mobile_sam(seed=0)
    if name in HQ_MODELS:
        return build_hq_sam(name, seed=0)
    torch.manual_seed(0)
    return sam_model_registry[name](checkpoint=None).eval()


def parameters(model: Any) -> int:
    """Parameters of a SAM model or of a memory tracker's video model."""
    module = model.model if isinstance(model, MemoryModel) else model
    return sum(p.numel() for p in module.parameters())


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
    tracker: Any
    if isinstance(sam, MemoryModel):
        tracker = MemoryEngine(sam)
    else:
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
    if isinstance(sam, MemoryModel):
        began = time.perf_counter()
        with torch.inference_mode():
            for frame in frames:
                sam.features(sam.pixels(frame))
        return (time.perf_counter() - began) / len(frames)
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
        "parameters_m": {name: round(parameters(sams[name]) / 1e6, 2) for name in models},
    }
    for name, count in facts["parameters_m"].items():
        print(f"{name}: {count} M parameters", flush=True)

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
                        persam_only = precision != "float32" or keyframes != "1"
                        if persam_only and is_memory_model(name):
                            continue
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
