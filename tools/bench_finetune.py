"""PerSAM-F on large photos: the loss at full resolution (the official code) against the loss on the
reference resized to at most ``finetune.loss_side`` pixels a side.

For each model and each photo subject (``NAME_00`` personalizes with ``--finetune``, ``NAME_01`` and
``NAME_02`` are segmented with the target), it prints the seconds of ``personalize`` at each side,
the largest difference of the learned weights, and the IoU of the masks found with each target
(two empty masks count as equal).

Usage (from the repository root; the photos are PerSeg's examples in ``../shared``)::

    python tools/bench_finetune.py
    python tools/bench_finetune.py --models demo benchmarks/models/suite-seed1.safetensors \\
        --sides 0 512 --threads 1 --json finetune.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from bench_quality import load_weights_file  # noqa: E402
from PIL import Image  # noqa: E402

from persam_video.config import load_config  # noqa: E402
from persam_video.model.registry import load_sam  # noqa: E402
from persam_video.persam.api import PerSAM  # noqa: E402
from persam_video.runtime import apply_threads  # noqa: E402

PHOTOS = ROOT.parent / "shared" / "data" / "perseg_examples"
SUBJECTS = ("cat", "colorful_sneaker", "duck_toy")
SUITE = ROOT / "benchmarks" / "models"
DEFAULT_MODELS = ["demo", *sorted(str(p) for p in SUITE.glob("*.safetensors"))]


def read(folder: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """An RGB photo and its object mask (palette index 1)."""
    image = np.asarray(Image.open(folder / f"{name}.jpg").convert("RGB"))
    return image, np.asarray(Image.open(folder / f"{name}.png")) == 1


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return 1.0 if union == 0 else float((a & b).sum() / union)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--sides", nargs=2, type=int, default=[0, 512], metavar=("A", "B"))
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not args.photos.is_dir():
        raise SystemExit(f"no photos at {args.photos} (PerSeg's examples)")
    apply_threads(args.threads)
    rows = []
    for name in args.models:
        path = Path(name)
        sam = load_weights_file(path) if path.suffix == ".safetensors" else load_sam(name)
        for subject in SUBJECTS:
            ref, ref_mask = read(args.photos, f"{subject}_00")
            runs = {}
            for side in args.sides:
                config = load_config("default").with_overrides(
                    ["finetune.enabled=true", f"finetune.loss_side={side}"]
                )
                persam = PerSAM(sam, config)
                began = time.perf_counter()
                target = persam.personalize(ref, ref_mask)
                seconds = time.perf_counter() - began
                masks = [
                    persam.segment(read(args.photos, f"{subject}_0{k}")[0], target).mask
                    for k in (1, 2)
                ]
                runs[side] = (target.mask_weights, seconds, masks)
            a, b = args.sides
            row = {
                "model": path.stem if path.suffix else name,
                "subject": subject,
                "size_hw": list(ref.shape[:2]),
                f"seconds_side_{a}": round(runs[a][1], 1),
                f"seconds_side_{b}": round(runs[b][1], 1),
                "weight_diff": round(float((runs[a][0] - runs[b][0]).abs().max()), 4),
                "mask_iou": [
                    round(iou(x, y), 4) for x, y in zip(runs[a][2], runs[b][2], strict=True)
                ],
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
            if args.json is not None:  # as it goes: an interrupted run keeps what it measured
                args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
