"""Print the table of a benchmark model suite: how each model was trained and its validation
figures, read from the metadata that ``tools/train_demo_model.py`` stores in each weights file.

Usage (from the repository root)::

    python tools/model_suite_table.py persam_video/assets/demo_sam.safetensors \
        benchmarks/models/*.safetensors

Prints a Markdown table (the one in ``benchmarks/models/README.md`` is this output).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from safetensors import safe_open

#: Validation metrics shown (the names ``train_demo_model.evaluate`` gives them), "all" column.
METRICS = (
    "1-click IoU",
    "box IoU",
    "box IoU, largest multimask",
    "similarity peak inside target",
    "PerSAM image-mode IoU (A -> B)",
)


def encoder_text(spec: dict[str, Any]) -> str:
    """``96 x 4`` (ViT width x blocks) or ``TinyViT 32/64/128/320 x 1/1/2/1``."""
    if spec.get("encoder_kind", "vit") == "tinyvit":
        dims = "/".join(map(str, spec["tinyvit_dims"]))
        return f"TinyViT {dims} x {'/'.join(map(str, spec['tinyvit_depths']))}"
    return f"{spec['encoder_dim']} x {spec['encoder_depth']}"


def describe(path: Path) -> dict[str, str]:
    """One table row of a weights file."""
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    spec = json.loads(metadata["spec"])
    training = json.loads(metadata["training"])
    args = training.get("args", {})
    metrics = training["validation"]["metrics"]
    row = {
        "file": path.name,
        "name": metadata.get("name", ""),
        "input": str(spec["image_size"]),
        "encoder": encoder_text(spec),
        "decoder": str(spec["decoder_dim"]),
        "parameters": f"{training.get('parameters', 0) / 1e6:.2f} M",
        "seed": str(training.get("seed")),
        "steps": str(training.get("steps")),
        "recipe": (
            f"lr {args.get('lr')}, refine passes {args.get('refine_passes')}, "
            f"embedding weight {args.get('embedding_weight', 0.5)}"
        ),
        "train min": f"{training.get('train_wall_time_s', 0) / 60:.0f}",
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:12],
    }
    for name in METRICS:
        value = metrics.get(name, {}).get("all")
        row[name] = "" if value is None else f"{value:.3f}"
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="weights files (safetensors)")
    args = parser.parse_args(argv)
    rows = [describe(path) for path in args.files]
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("| " + " | ".join("---" for _ in columns) + " |")
    for row in rows:
        print("| " + " | ".join(row[c] for c in columns) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
