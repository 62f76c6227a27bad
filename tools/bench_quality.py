"""Quality benchmark with ablations on a held-out procedural DAVIS-layout set.

Runs, on the same clips (test split seeds, never seen in training), the static baseline (first
mask copied to every frame), the ``paper_video`` preset, the ``default`` preset, and ``default``
minus each of its parts, evaluates each with the DAVIS measures (``persam_video.eval``,
equal to the official code) and prints a table; ``--json`` writes it too.

Usage::

    python tools/bench_quality.py --model demo --clips 20 --json bench_quality.json

Results are cached per variant under ``--work`` (the runner resumes), so an interrupted run
continues where it stopped; use a fresh ``--work`` folder after changing the code.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from persam_video.apps.davis import run_davis
from persam_video.config import load_config
from persam_video.eval.davis_dataset import DavisDataset
from persam_video.eval.evaluate import evaluate_davis
from persam_video.io import write_label_png
from persam_video.model import load_sam, model_metadata
from persam_video.synthetic.export import write_davis
from persam_video.video import VideoTracker

#: name -> (preset, overrides). "static" is the first mask copied to every frame.
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "static": ("", []),
    "paper_video": ("paper_video", []),
    "default": ("default", []),
    "fast": ("fast", []),
    "default, frame-size steps": ("default", ["decode.intermediate=frame"]),
    "default - momentum": ("default", ["track.update=false"]),
    "default - guided attention": ("default", ["decode.guided_attention=false"]),
    "default - semantic prompting": ("default", ["decode.semantic_prompt=false"]),
    "default - refinement": ("default", ["decode.refine_steps=0"]),
    "default - occlusion handling": ("default", ["track.occlusion=false"]),
    "default - box prompt": ("default", ["track.box_prompt=false"]),
}
COLUMNS = ("J&F-Mean", "J-Mean", "F-Mean", "J-Recall", "J-Decay")


def write_static(dataset: DavisDataset, out: Path) -> None:
    """The static baseline: every frame gets the first annotation."""
    for seq in dataset.sequences:
        folder = out / seq
        folder.mkdir(parents=True, exist_ok=True)
        first = dataset.first_annotation(seq)
        for path in dataset.frame_paths(seq):
            write_label_png(folder / f"{path.stem}.png", first)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="demo", help="Model name (default: demo).")
    parser.add_argument("--checkpoint", help="Checkpoint file for an official model name.")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--clips", type=int, default=20, help="Number of held-out clips.")
    parser.add_argument(
        "--first-seed",
        type=int,
        default=1000,
        help="First test-split seed of the set (the demo uses seeds from 0).",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=Path("bench-quality-work"),
        help="Folder for the generated set and the results (reused).",
    )
    parser.add_argument(
        "--variants", nargs="*", default=list(VARIANTS), help="Subset of variants to run."
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Extra override applied to every variant.",
    )
    parser.add_argument("--json", type=Path, help="Write the table and settings as JSON.")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {list(VARIANTS)}")

    data = args.work / "data"
    seeds = range(args.first_seed, args.first_seed + args.clips)
    marker = data / "seeds.json"
    if not marker.is_file() or json.loads(marker.read_text()) != list(seeds):
        shutil.rmtree(data, ignore_errors=True)
        write_davis(data, seeds, split="test", progress=not args.quiet)
        marker.write_text(json.dumps(list(seeds)))
    dataset = DavisDataset(data)
    frames = sum(len(dataset.frame_paths(s)) for s in dataset.sequences)
    objects = sum(len(dataset.object_ids(s)) for s in dataset.sequences)

    sam = load_sam(args.model, checkpoint=args.checkpoint, device=args.device)
    rows: dict[str, dict[str, float]] = {}
    per_object: dict[str, np.ndarray] = {}
    for name in args.variants:
        preset, overrides = VARIANTS[name]
        out = args.work / "results" / name.replace(" ", "_")
        start = time.perf_counter()
        if name == "static":
            write_static(dataset, out)
        else:
            config = load_config(preset).with_overrides([*overrides, *args.overrides])
            run_davis(VideoTracker(sam, config), dataset, out, progress=not args.quiet,
                      record=model_metadata(args.model, args.checkpoint))  # fmt: skip
        seconds = time.perf_counter() - start
        report = evaluate_davis(dataset, out, progress=False)
        rows[name] = {**{c: report.global_metrics[c] for c in COLUMNS}, "seconds": seconds}
        per_object[name] = np.array([(o.j.mean + o.f.mean) / 2 for o in report.objects])
        if not args.quiet:
            print(f"{name:30} J&F {rows[name]['J&F-Mean']:.3f}", file=sys.stderr)

    print(f"\nQuality on {args.clips} held-out procedural clips ({frames} frames, {objects} "
          f"objects), model {args.model}\n")  # fmt: skip
    if "default" in per_object:
        for name, scores in per_object.items():
            diff = scores - per_object["default"]
            rows[name]["delta"] = float(diff.mean())
            rows[name]["delta_se"] = float(diff.std(ddof=1) / np.sqrt(len(diff)))
    header = f"| {'variant':30} | " + " | ".join(f"{c:>8}" for c in COLUMNS)
    print(header + " | J&F vs default (paired s.e.) |")
    print("|" + "-" * 32 + "|" + "|".join("-" * 10 for _ in COLUMNS) + "|" + "-" * 30 + "|")
    for name, row in rows.items():
        delta = f"{row['delta']:+.3f} ± {row['delta_se']:.3f}" if "delta" in row else ""
        cells = " | ".join(f"{row[c]:8.3f}" for c in COLUMNS)
        print(f"| {name:30} | {cells} | {delta:>28} |")
    if args.json:
        args.json.write_text(json.dumps({
            "model": args.model, "clips": args.clips, "first_seed": args.first_seed,
            "frames": frames, "objects": objects, "overrides": args.overrides,
            "variants": {n: {"preset": VARIANTS[n][0], "overrides": VARIANTS[n][1]}
                         for n in rows},
            "results": rows,
        }, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
