"""Quality benchmark: several models x tracker variants on held-out procedural clips, per attribute.

Runs, on the same clips (``"test"`` split seeds from 1000, never used in training), each model
with each variant: the static baseline (first mask copied to every frame), the ``paper_video``,
``default`` and ``fast`` presets, ``default`` minus each of its parts and ``default`` with SAM
on keyframes only (``keyframes 2``, ``4``, ``8``, ``auto``). Every run is evaluated
with the DAVIS measures (``persam_video.eval``, equal to the official code) and reported on all
clips and per DAVIS-style attribute (the clip families of ``persam_video.synthetic.families``),
per model and as the mean over models.

Differences from ``default`` come with a paired standard error: paired over clips (the same clip
under both variants; a clip's objects are one cluster, so the difference is that of the J&F
means over objects and its error is the cluster-robust one). For the mean over models, each
object's difference is first averaged over the models, then clustered by clip in the same way:
the error says how much the clips could move the result, the models taken as given.

Usage::

    python tools/bench_quality.py --model demo --clips 20 --json bench_quality.json
    python tools/bench_quality.py --models demo,benchmarks/models/suite-seed1.safetensors \\
        --families all --clips-per-family 3 --variants static paper_video default fast \\
        --json benchmarks/quality-attributes.json

``--families`` picks the clip families (``all``, or names; ``mixed`` is ``make_clip``'s untagged
mixed clips, the only set when ``--families`` is not given, ``--clips`` of them). Models are
``demo``, an official name (``vit_b``... with ``--checkpoint``) or a safetensors file written by
``tools/train_demo_model.py`` (architecture in its metadata).

Results are cached under ``--work`` per (model, variant), keyed by the model file's SHA-256, the
variant's resolved config and overrides, the clip set and the package's source: a rerun reuses
what is done (and an interrupted run resumes clip by clip); anything that changed is redone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from safetensors import safe_open
from segment_anything import SamPredictor
from segment_anything.modeling import Sam

from persam_video.apps.davis import run_davis
from persam_video.atomic import discard, remove_quietly, temp_path
from persam_video.config import load_config
from persam_video.eval.davis_dataset import DavisDataset
from persam_video.eval.evaluate import evaluate_davis
from persam_video.io import write_label_png
from persam_video.model import load_sam, model_metadata, resolve_device
from persam_video.model.checkpoints import sha256_of
from persam_video.model.spec import SamSpec, build_sam_from_spec
from persam_video.runtime import apply_threads, choose_threads
from persam_video.synthetic import BENCHMARK_FIRST_SEED, FAMILIES
from persam_video.synthetic.export import (
    MIXED_FAMILY,
    clip_set_info,
    read_sequence_attributes,
    write_clip_set,
)
from persam_video.synthetic.families import FAMILY_MIN_FRAMES
from persam_video.video import FrameResult, VideoTracker

#: name -> (preset, overrides). "static" is the first mask copied to every frame; "oracle
#: box" is not a tracker but the model's own ceiling: SAM (the official ``SamPredictor``)
#: prompted on every frame with each object's ground-truth box of that very frame.
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "static": ("", []),
    "oracle box": ("", []),
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
    # SAM on keyframes only, the masks carried along the optical flow in between (--keyframes).
    "default, keyframes 2": ("default", ["keyframes.interval=2"]),
    "default, keyframes 4": ("default", ["keyframes.interval=4"]),
    "default, keyframes 8": ("default", ["keyframes.interval=8"]),
    "default, keyframes auto": ("default", ["keyframes.mode=auto"]),
    # Issue 12 section 3 (default has had the affinity temporal prior since then).
    "default - temporal prior": ("default", ["track.temporal_prior=none"]),
    "default, mask prior for affinity": ("default", ["track.temporal_prior=mask"]),
    "default, flow prior for affinity": ("default", ["track.temporal_prior=flow"]),
    # The jump guard (0.7) joined default after the flow prior's ablation.
    "default - jump guard": ("default", ["decode.jump_iou=0"]),
    "default, jump guard 0.3": ("default", ["decode.jump_iou=0.3"]),
    "default, jump guard 0.5": ("default", ["decode.jump_iou=0.5"]),
    # The re-entry rule joined default after the jump guard.
    "default - re-entry at border": ("default", ["track.reenter_at_border=false"]),
    # Dropping detached parts joined default after re-entry at the border.
    "default - detached parts": ("default", ["decode.drop_detached=false"]),
    "default + hysteresis": ("default", ["track.lost_after=3", "track.reacquire_after=2"]),
    # The search window and distractor negatives joined default after that ablation.
    "default - search window": ("default", ["prior.search_window=0"]),
    "default - distractor negatives": ("default", ["prior.distractor_negatives=0"]),
    # Today's default without the search window, the distractor negatives, the jump guard,
    # re-entry at the border and dropping detached parts: the default of before them.
    "the earlier default": (
        "default",
        [
            "prior.search_window=0",
            "prior.distractor_negatives=0",
            "decode.jump_iou=0",
            "track.reenter_at_border=false",
            "decode.drop_detached=false",
        ],
    ),
}
BASELINE = "default"
STATIC = "static"
ORACLE = "oracle box"
ALL_CLIPS = "all"
ALL_FAMILIES = "all"
COLUMNS = ("J&F-Mean", "J-Mean", "F-Mean", "J-Recall", "J-Decay")
DEFAULT_MIXED_CLIPS = 20
DEFAULT_CLIPS_PER_FAMILY = 3
KEY_CHARS = 12  # of a SHA-256 in folder names
PACKAGE_DIR = Path(__file__).resolve().parent.parent / "persam_video"
SOURCE_SUFFIXES = (".py", ".yaml")
SCORES_FILE = "scores.json"
SAM_FRAMES_FILE = "sam-frames.json"  # per clip: [keyframes, frames]
JSON_DECIMALS = 5  # of the floats in --json (the tables show 3)
#: Per-object fields of a run, as the columns of its ``per_object`` table in --json.
OBJECT_COLUMNS = ("sequence", "object_id", "j", "f", "j_recall", "j_decay")
DATA_DONE = "clips.json"


@dataclass(frozen=True)
class ModelRef:
    """A model to benchmark: its label in tables, how to load it and its weights' SHA-256."""

    label: str
    load: Callable[[], Sam]
    sha256: str | None
    record: dict[str, Any]


def source_digest(folder: Path) -> str:
    """SHA-256 over the package's source files (paths and contents), for cache keys."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.suffix in SOURCE_SUFFIXES):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def key_of(fields: dict[str, Any]) -> str:
    """SHA-256 of a JSON-serializable dict (sorted keys)."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def load_weights_file(path: Path) -> Sam:
    """A float32 SAM (eval mode, CPU) from a safetensors file with its ``spec`` in the metadata
    (the format of ``tools/train_demo_model.py`` and the bundled demo model)."""
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
        if "spec" not in metadata:
            raise ValueError(f"{path} has no architecture ('spec') in its metadata")
        state = {key: f.get_tensor(key).float() for key in f.keys()}
    sam = build_sam_from_spec(SamSpec.from_dict(json.loads(metadata["spec"])))
    sam.load_state_dict(state)
    return sam.eval()


def model_refs(names: list[str], checkpoint: str | None, device: str) -> list[ModelRef]:
    """Resolve model names or weights files (labels: the name, or the file's stem)."""
    refs = []
    for name in names:
        path = Path(name)
        if path.suffix == ".safetensors" or path.is_file():
            if not path.is_file():
                raise SystemExit(f"model file {path} does not exist")
            digest = sha256_of(path)

            def load(path: Path = path) -> Sam:
                return load_weights_file(path).to(resolve_device(device))

            record = {"model": path.stem, "checkpoint": str(path), "checkpoint_sha256": digest}
            refs.append(ModelRef(path.stem, load, digest, record))
        else:
            record = model_metadata(name, checkpoint)

            def load(name: str = name) -> Sam:
                return load_sam(name, checkpoint=checkpoint, device=device, progress=True)

            refs.append(ModelRef(name, load, record["checkpoint_sha256"], record))
    labels = [ref.label for ref in refs]
    if len(set(labels)) != len(labels):
        raise SystemExit(f"two models have the same label: {labels}")
    return refs


def split_list(values: list[str]) -> list[str]:
    """Words and comma-separated lists, flattened."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def prepare_clips(
    work: Path, clips: list[tuple[str, int]], n_frames: int | None, progress: bool
) -> tuple[DavisDataset, str]:
    """The clip set as a DAVIS-layout dataset under ``work`` (reused when it is complete);
    returns it with its key (the clips and the generator's source)."""
    data_key = key_of(
        {
            "clips": clips,
            "frames": n_frames,
            "split": "test",
            "generator": source_digest(PACKAGE_DIR / "synthetic"),
        }
    )
    data = work / f"data-{data_key[:KEY_CHARS]}"
    if not (data / DATA_DONE).is_file():
        # Written aside and renamed into place, so that runs sharing --work (e.g. one process
        # per model) can prepare the same clips at once: the first to finish wins.
        work.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(data, folder=True)
        try:
            infos = write_clip_set(tmp, clips, n_frames=n_frames, progress=progress)
            (tmp / DATA_DONE).write_text(json.dumps([info.name for info in infos]))
            publish_clips(tmp, data)
        finally:
            discard(tmp)
    return DavisDataset(data), data_key


def publish_clips(tmp: Path, data: Path) -> None:
    """Rename the finished clip set ``tmp`` to ``data``, unless another run's complete copy got
    there first; an incomplete ``data`` (left by a run of an older version) is replaced."""
    for _ in range(2):
        try:
            os.rename(tmp, data)
            return
        except OSError:
            if (data / DATA_DONE).is_file():
                return
            remove_quietly(data)
    os.rename(tmp, data)


def write_static(dataset: DavisDataset, out: Path) -> None:
    """The static baseline: every frame gets the first annotation."""
    for seq in dataset.sequences:
        folder = out / seq
        folder.mkdir(parents=True, exist_ok=True)
        first = dataset.first_annotation(seq)
        for path in dataset.frame_paths(seq):
            write_label_png(folder / f"{path.stem}.png", first)


def write_oracle(sam: Sam, dataset: DavisDataset, out: Path) -> None:
    """The model's ceiling: every frame segmented by SAM from each object's ground-truth box
    of that frame (single-mask output; an object absent from the frame gets no mask; where
    masks overlap, the larger logit wins)."""
    predictor = SamPredictor(sam)
    for seq in dataset.sequences:
        folder = out / seq
        folder.mkdir(parents=True, exist_ok=True)
        ids = dataset.object_ids(seq)
        annotations = dataset.load_annotations(seq)
        for path, truth in zip(dataset.frame_paths(seq), annotations, strict=True):
            with Image.open(path) as image:
                predictor.set_image(np.asarray(image.convert("RGB")))
            best = np.full(truth.shape, -np.inf, np.float32)
            labels = np.zeros(truth.shape, np.uint8)
            for obj_id in ids:
                ys, xs = np.nonzero(truth == obj_id)
                if not len(xs):
                    continue
                box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float32)
                logits, _, _ = predictor.predict(
                    box=box, multimask_output=False, return_logits=True
                )
                wins = (logits[0] > sam.mask_threshold) & (logits[0] > best)
                labels[wins], best[wins] = obj_id, logits[0][wins]
            write_label_png(folder / f"{path.stem}.png", labels)


def run_variant(
    model: ModelRef | None,
    get_sam: Callable[[], Sam],
    variant: str,
    spec: tuple[str, list[str]],
    extra: list[str],
    dataset: DavisDataset,
    folder: Path,
    progress: bool,
) -> dict[str, Any]:
    """Run one (model, variant) into ``folder`` and evaluate it; returns its scores.

    ``spec`` is the variant's (preset, overrides), as in :data:`VARIANTS`."""
    start = time.perf_counter()
    results = folder / "results"
    if variant == STATIC:
        write_static(dataset, results)
    elif variant == ORACLE:
        write_oracle(get_sam(), dataset, results)
    else:
        preset, overrides = spec
        config = load_config(preset).with_overrides([*overrides, *extra])
        tracker = VideoTracker(get_sam(), config)
        counter = SamFrames(folder / SAM_FRAMES_FILE)
        run_davis(
            tracker,
            dataset,
            results,
            progress=progress,
            record=model.record,
            on_result=counter.add,
            on_sequence=counter.save,
        )
    seconds = time.perf_counter() - start
    objects = object_scores(evaluate_davis(dataset, results, progress=False))
    scores: dict[str, Any] = {"seconds": seconds, "objects": objects}
    if variant not in (STATIC, ORACLE):
        scores["sam_frames"] = SamFrames(folder / SAM_FRAMES_FILE).share()
    return scores


def object_scores(report: Any) -> list[dict[str, Any]]:
    """Per object of an evaluation report: its clip, id, mean J and F, J recall and decay."""
    return [
        {
            "sequence": o.sequence,
            "object_id": o.object_id,
            "j": o.j.mean,
            "f": o.f.mean,
            "j_recall": o.j.recall,
            "j_decay": o.j.decay,
        }
        for o in report.objects
    ]


class SamFrames:
    """Per clip, how many frames SAM ran on (keyframes) out of how many, kept in a JSON file
    as each clip completes, so that a resumed run still counts every clip."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.counts: dict[str, list[int]] = json.loads(path.read_text()) if path.is_file() else {}
        self.pending: dict[str, list[int]] = {}

    def add(self, sequence: str, result: FrameResult) -> None:
        counts = self.pending.setdefault(sequence, [0, 0])
        counts[0] += int(result.keyframe)
        counts[1] += 1

    def save(self, sequence: str) -> None:
        self.counts[sequence] = self.pending.pop(sequence, [0, 0])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.counts))
        tmp.replace(self.path)

    def share(self) -> float:
        """Share of all counted frames that were keyframes (NaN before any clip)."""
        keys = sum(c[0] for c in self.counts.values())
        total = sum(c[1] for c in self.counts.values())
        return keys / total if total else float("nan")


def cached_run(
    model: ModelRef,
    get_sam: Callable[[], Sam],
    variant: str,
    spec: tuple[str, list[str]],
    extra: list[str],
    dataset: DavisDataset,
    data_key: str,
    code_key: str,
    work: Path,
    device: str,
    progress: bool,
) -> tuple[dict[str, Any], bool]:
    """Scores of (model, variant) from the cache, or run and cache them; True when reused.

    ``spec`` is the variant's (preset, overrides), as in :data:`VARIANTS`."""
    preset, overrides = spec
    fields: dict[str, Any] = {"variant": variant, "data": data_key, "code": code_key}
    if variant == ORACLE:  # a model, no tracker config
        fields |= {"model_sha256": model.sha256, "device": device}
    elif variant != STATIC:  # the static baseline needs no model and no config
        config = load_config(preset).with_overrides([*overrides, *extra])
        fields |= {
            "model_sha256": model.sha256,
            "config": config.to_dict(),
            "overrides": extra,
            "device": device,
        }
    key = key_of(fields)
    owner = "no-model" if variant == STATIC else model.label
    folder = work / "runs" / owner / f"{variant.replace(' ', '_')}-{key[:KEY_CHARS]}"
    scores_path = folder / SCORES_FILE
    if scores_path.is_file():
        cached = json.loads(scores_path.read_text())
        if cached.get("key") == key:
            return cached, True
    scores = {
        "key": key,
        **run_variant(model, get_sam, variant, spec, extra, dataset, folder, progress),
    }
    folder.mkdir(parents=True, exist_ok=True)
    tmp = scores_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(scores))
    tmp.replace(scores_path)
    return scores, False


def clustered_mean(values: np.ndarray, clusters: np.ndarray) -> tuple[float, float]:
    """Mean over objects and its standard error with objects clustered by clip.

    The cluster-robust (ratio) estimator: the clips are the independent units, so two objects
    of one clip do not count as two independent observations. 0 s.e. for a single clip.
    """
    mean = float(values.mean())
    groups = np.unique(clusters)
    if len(groups) < 2:
        return mean, float("nan")
    residuals = np.array([(values[clusters == g] - mean).sum() for g in groups])
    n = len(groups)
    variance = n / (n - 1) * float((residuals**2).sum()) / len(values) ** 2
    return mean, float(np.sqrt(variance))


def group_stats(
    objects: list[dict[str, Any]], baseline: list[dict[str, Any]] | None, members: set[str]
) -> dict[str, Any]:
    """DAVIS measures of the objects of the clips ``members``, and the paired difference to the
    baseline's J&F over the same objects."""
    chosen = [i for i, o in enumerate(objects) if o["sequence"] in members]
    j = np.array([objects[i]["j"] for i in chosen])
    f = np.array([objects[i]["f"] for i in chosen])
    clusters = np.array([objects[i]["sequence"] for i in chosen])
    jf = (j + f) / 2
    stats = {
        "clips": len(set(clusters)),
        "objects": len(chosen),
        "J&F-Mean": float(jf.mean()),
        "J-Mean": float(j.mean()),
        "F-Mean": float(f.mean()),
        "J-Recall": float(np.mean([objects[i]["j_recall"] for i in chosen])),
        "J-Decay": float(np.mean([objects[i]["j_decay"] for i in chosen])),
        "J&F s.e.": clustered_mean(jf, clusters)[1],
    }
    if baseline is not None:
        base = np.array([(baseline[i]["j"] + baseline[i]["f"]) / 2 for i in chosen])
        stats["delta"], stats["delta_se"] = clustered_mean(jf - base, clusters)
    return stats


def object_jf(objects: list[dict[str, Any]]) -> np.ndarray:
    """Per-object J&F, in the evaluation's order."""
    return np.array([(o["j"] + o["f"]) / 2 for o in objects])


def mean_over_models(
    per_model: dict[str, dict[str, dict[str, Any]]],
    variants: list[str],
    groups: dict[str, set[str]],
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per variant and group: measures averaged over models, and the difference to the baseline
    averaged over models object by object, then clustered by clip."""
    result: dict[str, dict[str, dict[str, Any]]] = {}
    first = next(iter(per_model.values()))
    sequences = np.array([o["sequence"] for o in first[variants[0]]["objects"]])
    for variant in variants:
        stacks = {name: [] for name in ("j", "f", "j_recall", "j_decay")}
        for runs in per_model.values():
            for name in stacks:
                stacks[name].append([o[name] for o in runs[variant]["objects"]])
        mean = {name: np.mean(np.array(rows), axis=0) for name, rows in stacks.items()}
        jf = (mean["j"] + mean["f"]) / 2
        if BASELINE in variants:
            base = np.mean([object_jf(runs[BASELINE]["objects"]) for runs in per_model.values()], 0)
        result[variant] = {}
        for group, members in groups.items():
            chosen = np.isin(sequences, sorted(members))
            stats = {
                "clips": len(members),
                "objects": int(chosen.sum()),
                "J&F-Mean": float(jf[chosen].mean()),
                "J-Mean": float(mean["j"][chosen].mean()),
                "F-Mean": float(mean["f"][chosen].mean()),
                "J-Recall": float(mean["j_recall"][chosen].mean()),
                "J-Decay": float(mean["j_decay"][chosen].mean()),
                "J&F s.e.": clustered_mean(jf[chosen], sequences[chosen])[1],
            }
            if BASELINE in variants and variant != BASELINE:
                diff = jf[chosen] - base[chosen]
                stats["delta"], stats["delta_se"] = clustered_mean(diff, sequences[chosen])
            result[variant][group] = stats
    return result


def rounded(value: Any, decimals: int = JSON_DECIMALS) -> Any:
    """``value`` with every float rounded (NaN becomes None), for a compact JSON report."""
    if isinstance(value, float):
        return None if np.isnan(value) else round(value, decimals)
    if isinstance(value, dict):
        return {key: rounded(item, decimals) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(item, decimals) for item in value]
    return value


def compact_json(report: dict[str, Any]) -> str:
    """``report`` as indented JSON with every list of plain values on one line."""
    text = json.dumps(rounded(report), indent=1)

    def one_line(match: re.Match[str]) -> str:
        try:
            return json.dumps(json.loads(match.group(0)))
        except json.JSONDecodeError:  # a bracket inside a string: leave it as it is
            return match.group(0)

    return re.sub(r"\[[^\[\]{}]*\]", one_line, text)


def format_delta(stats: dict[str, Any]) -> str:
    """``+0.012 ± 0.004`` (empty without a baseline, for the baseline itself)."""
    if "delta" not in stats or np.isnan(stats.get("delta_se", np.nan)):
        return "" if "delta" not in stats else f"{stats['delta']:+.3f}"
    return f"{stats['delta']:+.3f} ± {stats['delta_se']:.3f}"


def print_tables(
    models: list[str],
    variants: list[str],
    groups: dict[str, set[str]],
    per_model: dict[str, dict[str, dict[str, Any]]],
    mean: dict[str, dict[str, dict[str, Any]]],
) -> None:
    """The measured tables, in Markdown."""
    print(f"\nAll clips, per model and variant (J&F vs {BASELINE}: paired over clips)\n")
    print(
        "| model | variant | " + " | ".join(COLUMNS) + f" | J&F vs {BASELINE} | SAM frames | "
        "run s |"
    )
    print("|---|---|" + "---:|" * len(COLUMNS) + "---:|---:|---:|")
    for model in models:
        for variant in variants:
            run = per_model[model][variant]
            stats = run["groups"][ALL_CLIPS]
            cells = " | ".join(f"{stats[c]:.3f}" for c in COLUMNS)
            share = run.get("sam_frames")
            keys = "" if share is None or np.isnan(share) else f"{share:.2f}"
            print(
                f"| {model} | {variant} | {cells} | {format_delta(stats)} | {keys} | "
                f"{run['seconds']:.0f} |"
            )
    print(
        f"\nJ&F per attribute: each model, their mean, and the mean's difference to {BASELINE} "
        "(paired over the same clips)\n"
    )
    print("| attribute (clips) | variant | " + " | ".join(models) + " | mean | mean vs default |")
    print("|---|---|" + "---:|" * (len(models) + 2))
    for group, members in groups.items():
        for variant in variants:
            cells = " | ".join(
                f"{per_model[m][variant]['groups'][group]['J&F-Mean']:.3f}" for m in models
            )
            stats = mean[variant][group]
            print(
                f"| {group} ({len(members)}) | {variant} | {cells} | {stats['J&F-Mean']:.3f} | "
                f"{format_delta(stats)} |"
            )
    print("\nMean over models, all clips\n")
    print("| variant | J&F-Mean | J-Mean | F-Mean | J-Recall | J&F vs default (paired s.e.) |")
    print("|---|---:|---:|---:|---:|---:|")
    for variant in variants:
        stats = mean[variant][ALL_CLIPS]
        cells = " | ".join(f"{stats[c]:.3f}" for c in ("J&F-Mean", "J-Mean", "F-Mean", "J-Recall"))
        print(f"| {variant} | {cells} | {format_delta(stats)} |")


def parse_try(text: str) -> tuple[str, tuple[str, list[str]]]:
    """``'NAME: KEY=VALUE ...'`` (an ad-hoc variant of ``--try``) -> (NAME, (preset, overrides)),
    the overrides checked against the ``default`` preset (``ValueError`` naming the problem)."""
    name, sep, rest = text.partition(":")
    name, overrides = name.strip(), rest.split()
    if not sep or not name or not overrides:
        raise ValueError("expected 'NAME: KEY=VALUE ...' (a name, a colon, overrides)")
    load_config(BASELINE).with_overrides(overrides)
    return name, (BASELINE, overrides)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=None,
        help="Models (comma-separated or several words): demo, an official name, or a "
        "safetensors file of tools/train_demo_model.py. Default: --model.",
    )
    parser.add_argument("--model", default="demo", help="One model (default: demo).")
    parser.add_argument("--checkpoint", help="Checkpoint file for an official model name.")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", default=None, help="Torch threads, N or auto.")
    parser.add_argument(
        "--families",
        nargs="+",
        default=None,
        help=f"Clip families: all, or some of {', '.join(FAMILIES)}, {MIXED_FAMILY} "
        f"(comma-separated or several words). Default: {MIXED_FAMILY} only (--clips clips).",
    )
    parser.add_argument(
        "--clips",
        type=int,
        default=DEFAULT_MIXED_CLIPS,
        help=f"Number of mixed clips when --families is not given (default {DEFAULT_MIXED_CLIPS}).",
    )
    parser.add_argument(
        "--clips-per-family",
        type=int,
        default=DEFAULT_CLIPS_PER_FAMILY,
        help=f"Clips of each family in --families (default {DEFAULT_CLIPS_PER_FAMILY}).",
    )
    parser.add_argument(
        "--frames", type=int, default=None, help="Frames per clip (default: each generator's)."
    )
    parser.add_argument(
        "--first-seed",
        type=int,
        default=BENCHMARK_FIRST_SEED,
        help=f"First test-split seed of each family (default {BENCHMARK_FIRST_SEED}; smaller "
        "test seeds are the demo's and the tests').",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=Path("bench-quality-work"),
        help="Folder for the generated clips and the cached runs (reused).",
    )
    parser.add_argument(
        "--variants",
        nargs="*",
        default=list(VARIANTS),
        help="Subset of variants to run (names as in VARIANTS; quote those with spaces).",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Extra override applied to every variant.",
    )
    parser.add_argument(
        "--try",
        dest="tries",
        action="append",
        default=[],
        metavar="'NAME: KEY=VALUE ...'",
        help="An ad-hoc variant: `default` with these overrides (space-separated), run after "
        "--variants under NAME, e.g. --try 'box margin 5: track.box_margin=5'.",
    )
    parser.add_argument("--json", type=Path, help="Write the tables and settings as JSON.")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {list(VARIANTS)}")
    args.table = dict(VARIANTS)
    for text in args.tries:
        try:
            name, spec = parse_try(text)
        except ValueError as exc:
            parser.error(f"--try {text!r}: {exc}")
        if name in args.table:
            parser.error(f"--try {text!r}: the variant {name!r} exists already")
        args.table[name] = spec
        args.variants.append(name)
    if args.families is not None:
        families = split_list(args.families)
        if ALL_FAMILIES in families:
            families = [f for f in families if f != ALL_FAMILIES] + list(FAMILIES)
        args.families = list(dict.fromkeys(families))
        unknown = sorted(set(args.families) - {*FAMILIES, MIXED_FAMILY})
        if unknown:
            parser.error(f"unknown families {unknown}; known: {[*FAMILIES, MIXED_FAMILY]}")
        short = args.frames is not None and args.frames < FAMILY_MIN_FRAMES
        if short and set(args.families) - {MIXED_FAMILY}:
            parser.error(f"--frames: a family clip needs at least {FAMILY_MIN_FRAMES} frames")
    args.models = split_list(args.models) if args.models else [args.model]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    apply_threads(choose_threads(args.threads))
    progress = not args.quiet
    started = time.perf_counter()
    if args.families is None:
        clips = [(MIXED_FAMILY, args.first_seed + i) for i in range(args.clips)]
    else:
        clips = [
            (family, args.first_seed + i)
            for family in args.families
            for i in range(args.clips_per_family)
        ]
    infos = [clip_set_info(f, s, n_frames=args.frames) for f, s in clips]
    dataset, data_key = prepare_clips(args.work, clips, args.frames, progress)
    attributes = read_sequence_attributes(dataset.root)
    groups: dict[str, set[str]] = {ALL_CLIPS: set(dataset.sequences)}
    for info in infos:
        for attribute in attributes.get(info.name, ()):
            groups.setdefault(attribute, set()).add(info.name)
    code_key = source_digest(PACKAGE_DIR)
    models = model_refs(args.models, args.checkpoint, args.device)

    per_model: dict[str, dict[str, dict[str, Any]]] = {}
    for model in models:
        loaded: list[Sam] = []

        def get_sam(model: ModelRef = model, loaded: list[Sam] = loaded) -> Sam:
            if not loaded:
                loaded.append(model.load())
            return loaded[0]

        per_model[model.label] = {}
        for variant in args.variants:
            scores, reused = cached_run(
                model,
                get_sam,
                variant,
                args.table[variant],
                args.overrides,
                dataset,
                data_key,
                code_key,
                args.work,
                str(resolve_device(args.device)),
                progress,
            )
            per_model[model.label][variant] = scores
            if progress:
                how = "reused from the cache" if reused else f"ran in {scores['seconds']:.0f} s"
                print(f"{model.label} / {variant}: {how}", file=sys.stderr)
        loaded.clear()

    order = None
    for runs in per_model.values():
        for scores in runs.values():
            ids = [(o["sequence"], o["object_id"]) for o in scores["objects"]]
            if order is not None and ids != order:
                raise RuntimeError("runs evaluated different objects; use a fresh --work")
            order = ids
        baseline = runs[BASELINE]["objects"] if BASELINE in runs else None
        for variant, scores in runs.items():
            base = baseline if variant != BASELINE else None
            scores["groups"] = {
                group: group_stats(scores["objects"], base, members)
                for group, members in groups.items()
            }
    mean = mean_over_models(per_model, args.variants, groups)
    frames = sum(info.n_frames for info in infos)
    objects = sum(len(info.object_ids) for info in infos)
    print(
        f"\nQuality on {len(infos)} held-out procedural clips ({frames} frames, {objects} objects;"
        f" families {', '.join(args.families or [MIXED_FAMILY])}), models "
        f"{', '.join(m.label for m in models)}"
    )
    labels = [m.label for m in models]
    print_tables(labels, args.variants, groups, per_model, mean)
    wall = time.perf_counter() - started
    runs_s = sum(  # the static baseline ran once, for every model
        s["seconds"] for runs in per_model.values() for v, s in runs.items() if v != STATIC
    ) + next((runs[STATIC]["seconds"] for runs in per_model.values() if STATIC in runs), 0.0)
    print(f"\nwall time {wall:.0f} s (the runs took {runs_s:.0f} s when they ran)")
    if args.json:
        report = {
            "settings": {
                "models": [
                    {
                        "label": m.label,
                        "source": m.record.get("checkpoint") or m.label,
                        "sha256": m.sha256,
                    }
                    for m in models
                ],
                "variants": {
                    v: {"preset": args.table[v][0], "overrides": args.table[v][1]}
                    for v in args.variants
                },
                "overrides": args.overrides,
                "families": args.families or [MIXED_FAMILY],
                "first_seed": args.first_seed,
                "frames_per_clip": args.frames,
                "split": "test",
                "pairing": "clips (objects of a clip clustered); mean over models: per-object "
                "differences averaged over models, then clustered by clip",
            },
            "clips": [
                {
                    "name": info.name,
                    "family": info.family or MIXED_FAMILY,
                    "attributes": list(info.attributes),
                    "frames": info.n_frames,
                    "objects": len(info.object_ids),
                }
                for info in infos
            ],
            "frames": frames,
            "objects": objects,
            "results": {
                model: {
                    variant: {
                        "groups": s["groups"],
                        "seconds": s["seconds"],
                        **({"sam_frames": s["sam_frames"]} if "sam_frames" in s else {}),
                        "per_object": {
                            "columns": list(OBJECT_COLUMNS),
                            "rows": [[o[c] for c in OBJECT_COLUMNS] for o in s["objects"]],
                        },
                    }
                    for variant, s in runs.items()
                }
                for model, runs in per_model.items()
            },
            "mean_over_models": mean,
            "runs_s": runs_s,
            "wall_s": wall,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(compact_json(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
