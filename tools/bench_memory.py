"""The memory engine on the procedural attribute clips: alone, with PerSAM re-detection, and
PerSAM's own engine beside it; and ``find`` (a target, no annotation) on the same clips.

On the held-out clips of ``tools/bench_quality.py`` (``"test"`` split seeds from 1000, never used
in training; one set per clip family, DAVIS layout), it runs:

- ``static``: the first mask copied to every frame;
- ``memory alone``: the memory tracker (``--memory``: a model folder, e.g. the small SAM 2 model
  ``benchmarks/models/suite-sam2`` trained by ``tools/train_memory_model.py``) from the first
  annotation, re-detection off (``memory.redetect=false``);
- ``memory + re-detection``: the same with the memory engine's default settings;
- ``+ guided attention``, ``+ semantic prompting``: re-detection and PerSAM's decoder
  mechanism inside the tracker's decoder (``memory.guided_attention``,
  ``memory.semantic_prompt``; off by default);
- ``+ cascaded refinement``: re-detection and PerSAM's cascaded refinement through the
  tracker's image path (``memory.refine``; off by default);
- ``PerSAM default``: PerSAM's engine, ``default`` preset, on each ``--persam`` model (its mean
  over those models is a row of its own).

Each run is evaluated with the DAVIS measures (``persam_video.eval``) on all clips and per
attribute; ``memory + re-detection`` gets the paired difference to ``memory alone``, and the
PerSAM mechanisms theirs to ``memory + re-detection``, with its clip-clustered standard error
(as ``bench_quality.py``).

``find``: per clip, a target is made (``personalize``) from object 1's mask on frame 0, and the
clip is searched for it from frame 0 with no annotation (what ``persam-video find`` runs); each
frame's "present" is compared with the ground truth (the object has pixels): presence
precision and recall over frames, on all clips and per family (``distractors`` and
``scene-cut`` hold look-alikes), for the memory engine and for PerSAM's on each model.

Runs are cached under ``--work`` (run_davis resumes a results folder clip by clip), keyed by the
model's weights, the settings and the clip set. Usage::

    python tools/bench_memory.py --memory benchmarks/models/suite-sam2 \\
        --persam demo,benchmarks/models/suite-seed1.safetensors --families all \\
        --clips-per-family 5 --json benchmarks/quality-memory.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS.parent))
sys.path.insert(0, str(TOOLS))

from bench_quality import (  # noqa: E402
    ALL_CLIPS,
    PACKAGE_DIR,
    compact_json,
    group_stats,
    key_of,
    load_weights_file,
    object_scores,
    prepare_clips,
    source_digest,
    write_static,
)

from persam_video.apps.davis import run_davis  # noqa: E402
from persam_video.apps.engines import EngineModel, load_engine_model  # noqa: E402
from persam_video.config import load_config  # noqa: E402
from persam_video.eval.davis_dataset import DavisDataset  # noqa: E402
from persam_video.eval.evaluate import evaluate_davis  # noqa: E402
from persam_video.memory.config import MemoryConfig  # noqa: E402
from persam_video.memory.targets import personalize as personalize_memory  # noqa: E402
from persam_video.model.checkpoints import sha256_of  # noqa: E402
from persam_video.model.registry import model_metadata  # noqa: E402
from persam_video.persam import PerSAM  # noqa: E402
from persam_video.runtime import apply_threads  # noqa: E402
from persam_video.synthetic import BENCHMARK_FIRST_SEED, FAMILIES  # noqa: E402
from persam_video.synthetic.export import clip_set_info, read_sequence_attributes  # noqa: E402
from persam_video.video.engine import Engine  # noqa: E402

STATIC = "static"
ALONE = "memory alone"
REDETECT = "memory + re-detection"
GUIDED = "+ guided attention"
SEMANTIC = "+ semantic prompting"
REFINE = "+ cascaded refinement"
#: The memory engine's runs: label -> settings.
MEMORY_RUNS = {
    ALONE: MemoryConfig(redetect=False),
    REDETECT: MemoryConfig(),
    GUIDED: MemoryConfig(guided_attention=True),
    SEMANTIC: MemoryConfig(semantic_prompt=True),
    REFINE: MemoryConfig(refine=True),
}
#: Each run's baseline for the paired differences.
BASELINES = {REDETECT: ALONE, GUIDED: REDETECT, SEMANTIC: REDETECT, REFINE: REDETECT}
PERSAM = "PerSAM default"
PERSAM_MEAN = "PerSAM default (mean over models)"
MEMORY_MODEL = "sam2.1_hiera_tiny"  # the family of the trained folders
FIND_OBJECT = 1
SCORES = "scores.json"


def persam_model(spec: str) -> tuple[str, EngineModel]:
    """A PerSAM model: ``demo`` or a safetensors file of ``tools/train_demo_model.py``."""
    path = Path(spec)
    if path.suffix == ".safetensors":
        sam = load_weights_file(path)
        record = {"model": path.stem, "checkpoint": str(path), "checkpoint_sha256": sha256_of(path)}
        return path.stem, EngineModel(path.stem, record, sam=sam)
    return spec, EngineModel(spec, model_metadata(spec), sam=load_engine_model(spec, None).sam)


def cached(work: Path, label: str, fields: dict[str, Any], run: Any) -> dict[str, Any]:
    """``run(folder)``'s scores, cached under ``work`` by ``fields``."""
    key = key_of(fields)
    folder = work / "memory-runs" / label.replace(" ", "_") / key[:12]
    path = folder / SCORES
    if path.is_file():
        return json.loads(path.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    scores = run(folder)
    scores["seconds"] = time.perf_counter() - start
    path.write_text(json.dumps(scores))
    return scores


def tracked(engine: Engine | None, dataset: DavisDataset, folder: Path) -> dict[str, Any]:
    """Track every clip from its first annotation (``None``: static) and evaluate."""
    results = folder / "results"
    if engine is None:
        write_static(dataset, results)
    else:
        run_davis(engine, dataset, results, progress=False)
    return {"objects": object_scores(evaluate_davis(dataset, results, progress=False))}


def found(model: EngineModel, dataset: DavisDataset, folder: Path) -> dict[str, Any]:
    """Per clip: object 1's target from frame 0, searched from frame 0 with no annotation;
    per frame, (truly present, said present)."""
    engine = model.engine(MemoryConfig() if model.is_memory else load_config("default"))
    frames_of: dict[str, list[list[bool]]] = {}
    for seq in dataset.sequences:
        paths = dataset.frame_paths(seq)
        truth = dataset.load_annotations(seq)
        first = np.asarray(Image.open(paths[0]).convert("RGB"))
        mask = truth[0] == FIND_OBJECT
        if model.memory is not None:
            target = personalize_memory(model.memory, [(first, mask)])
        else:
            target = PerSAM(model.sam, load_config("default")).personalize_shots([(first, mask)])
        session = engine.open_session(str(paths[0].parent))
        session.add_target(FIND_OBJECT, target)
        said = {r.index: any(o.present for o in r.objects) for r in session.propagate("forward")}
        frames_of[seq] = [
            [bool((labels == FIND_OBJECT).any()), said.get(t, False)]
            for t, labels in enumerate(truth)
        ]
    return {"frames": frames_of}


def presence(frames: dict[str, list[list[bool]]], members: set[str]) -> dict[str, float]:
    """Presence precision and recall over the frames of the clips ``members``."""
    pairs = np.array([p for seq in sorted(members) for p in frames[seq]], bool).reshape(-1, 2)
    truth, said = pairs[:, 0], pairs[:, 1]
    hits = float((truth & said).sum())
    return {
        "frames": len(pairs),
        "present": int(truth.sum()),
        "precision": hits / max(float(said.sum()), 1.0),
        "recall": hits / max(float(truth.sum()), 1.0),
        "false_alarms": int((~truth & said).sum()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memory", required=True, type=Path, help="memory model folder")
    parser.add_argument("--persam", default="demo", help="PerSAM models, comma-separated")
    parser.add_argument("--families", default="all")
    parser.add_argument("--clips-per-family", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=BENCHMARK_FIRST_SEED)
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path(".bench-memory"))
    parser.add_argument("--no-find", action="store_true", help="skip the find measurement")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    apply_threads(args.threads)
    families = list(FAMILIES) if args.families == "all" else args.families.split(",")
    clips = [(f, args.first_seed + i) for f in families for i in range(args.clips_per_family)]
    dataset, data_key = prepare_clips(args.work, clips, args.frames, progress=True)
    infos = [clip_set_info(f, s, n_frames=args.frames) for f, s in clips]
    attributes = read_sequence_attributes(dataset.root)
    groups: dict[str, set[str]] = {ALL_CLIPS: set(dataset.sequences)}
    for info in infos:
        for attribute in attributes.get(info.name, ()):
            groups.setdefault(attribute, set()).add(info.name)
    code = source_digest(PACKAGE_DIR)
    memory = load_engine_model(MEMORY_MODEL, args.memory, "cpu")
    memory_key = memory.metadata["files_sha256"]
    base = {"data": data_key, "code": code}

    runs: dict[str, dict[str, Any]] = {}
    runs[STATIC] = cached(
        args.work, STATIC, {**base, "run": STATIC}, lambda f: tracked(None, dataset, f)
    )
    for label, config in MEMORY_RUNS.items():
        fields = {**base, "model": memory_key, "config": config.to_dict()}
        runs[label] = cached(
            args.work, label, fields, lambda f, c=config: tracked(memory.engine(c), dataset, f)
        )
        print(f"{label}: {runs[label]['seconds']:.0f} s", file=sys.stderr, flush=True)
    persam_labels = []
    finds: dict[str, dict[str, Any]] = {}
    for spec in [s for s in args.persam.split(",") if s]:
        name, model = persam_model(spec)
        label = f"{PERSAM}: {name}"
        fields = {**base, "model": model.metadata["checkpoint_sha256"], "preset": "default"}
        runs[label] = cached(
            args.work,
            label,
            fields,
            lambda f, m=model: tracked(m.engine(load_config("default")), dataset, f),
        )
        persam_labels.append(label)
        print(f"{label}: {runs[label]['seconds']:.0f} s", file=sys.stderr, flush=True)
        if not args.no_find:
            finds[name] = cached(
                args.work,
                f"find {name}",
                {**fields, "find": 1},
                lambda f, m=model: found(m, dataset, f),
            )
    if not args.no_find:
        finds["memory"] = cached(
            args.work,
            "find memory",
            {**base, "model": memory_key, "find": 1},
            lambda f: found(memory, dataset, f),
        )

    order = [(o["sequence"], o["object_id"]) for o in runs[STATIC]["objects"]]
    for scores in runs.values():
        if [(o["sequence"], o["object_id"]) for o in scores["objects"]] != order:
            raise RuntimeError("runs evaluated different objects; use a fresh --work")
    if persam_labels:  # the PerSAM engine's mean over models, object by object
        runs[PERSAM_MEAN] = {
            "objects": [
                {
                    **runs[STATIC]["objects"][i],
                    **{
                        k: float(np.mean([runs[lab]["objects"][i][k] for lab in persam_labels]))
                        for k in ("j", "f", "j_recall", "j_decay")
                    },
                }
                for i in range(len(order))
            ]
        }
    table: dict[str, dict[str, Any]] = {}
    for label, scores in runs.items():
        baseline = runs[BASELINES[label]]["objects"] if label in BASELINES else None
        table[label] = {
            group: group_stats(scores["objects"], baseline, members)
            for group, members in sorted(groups.items())
        }
    print(f"\nJ&F on {len(infos)} clips ({', '.join(families)}); memory model {args.memory}")
    names = [ALL_CLIPS, *sorted(g for g in groups if g != ALL_CLIPS)]
    print(f"{'run':44} " + " ".join(f"{g[:14]:>14}" for g in names))
    for label, stats in table.items():
        print(f"{label:44} " + " ".join(f"{stats[g]['J&F-Mean']:14.3f}" for g in names))
    for label, base in BASELINES.items():
        print(f"\n{label} minus {base} (paired, clip-clustered s.e.)")
        for g in names:
            s = table[label][g]
            print(f"  {g:20} {s['delta']:+.3f} ± {s['delta_se']:.3f}  ({s['clips']} clips)")
    presence_table = {}
    if finds:
        print("\nfind: presence precision / recall over frames (target from frame 0 of object 1)")
        for name, scores in finds.items():
            presence_table[name] = {
                g: presence(scores["frames"], members) for g, members in sorted(groups.items())
            }
            row = presence_table[name]
            print(
                f"  {name:24} "
                + "  ".join(
                    f"{g[:12]} {row[g]['precision']:.2f}/{row[g]['recall']:.2f}" for g in names
                )
            )
    if args.json:
        report = {
            "settings": {
                "memory_model": str(args.memory),
                "memory_files_sha256": memory_key,
                "persam_models": args.persam.split(","),
                "families": families,
                "clips_per_family": args.clips_per_family,
                "first_seed": args.first_seed,
            },
            "clips": len(infos),
            "jf": {label: stats for label, stats in table.items()},
            "find_presence": presence_table,
            "seconds": {label: s.get("seconds") for label, s in runs.items()},
        }
        args.json.write_text(compact_json(report) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
