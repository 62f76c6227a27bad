"""Many clips: a manifest processed locally or on a Ray cluster, resumable, failures isolated.

Manifest: a CSV file with a header, or JSON lines, one clip per row:

- ``input`` (required): video file or folder of frames;
- ``mask`` or ``target`` (exactly one): first-frame mask, or a ``.target`` file;
- ``name`` (optional): output folder name (default: the input's name without extension);
- ``overrides`` (optional): config overrides, ``key=value`` separated by ``;`` in CSV, a list of
  strings or a mapping in JSON lines.

Relative paths are relative to the manifest's folder. The whole manifest is checked before any
clip runs, and every problem is reported at once.

Each clip is tracked into ``OUT/.<name>.partial-<pid>/``; when all of its outputs are written, a
``done.json`` record is added and the folder is renamed to ``OUT/<name>/``. A rerun skips clips
whose ``done.json`` exists and redoes the others, so killing a run and starting it again gives
the same final outputs as an uninterrupted run. A clip that fails (unreadable, corrupt, ...) is
recorded in ``OUT/failures.jsonl`` and the others go on.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from persam_video.config import ConfigError, PerSAMConfig

DONE_RECORD = "done.json"
FAILURES = "failures.jsonl"
MANIFEST_FIELDS = ("input", "mask", "target", "name", "overrides")
CSV_OVERRIDE_SEPARATOR = ";"


class ManifestError(ValueError):
    """The manifest has problems; the message lists all of them, one per line."""


@dataclass(frozen=True)
class ClipJob:
    """One row of the manifest, checked."""

    name: str
    input: str
    mask: str | None = None
    target: str | None = None
    overrides: tuple[str, ...] = ()


@dataclass
class ClipOutcome:
    """What happened to one clip."""

    name: str
    status: str  # "done", "skipped", "failed"
    frames: int = 0
    seconds: float = 0.0
    reason: str | None = None


@dataclass
class BatchSettings:
    """What every clip shares: model, config and outputs (picklable, sent to Ray workers)."""

    model: str
    checkpoint: str | None
    device: str
    config: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- manifest
def read_manifest(path: str | os.PathLike[str], base_config: PerSAMConfig) -> list[ClipJob]:
    """Parse and check a manifest; raise :class:`ManifestError` listing every problem."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest {path} does not exist")
    rows = list(_rows(path))
    problems: list[str] = []
    jobs: list[ClipJob] = []
    names: dict[str, int] = {}
    for line, row in rows:
        where = f"{path.name}:{line}"
        unknown = sorted(set(row) - set(MANIFEST_FIELDS))
        if unknown:
            problems.append(f"{where}: unknown column(s) {', '.join(unknown)}")
        source = str(row.get("input") or "").strip()
        if not source:
            problems.append(f"{where}: no input")
            continue
        resolved = _resolve(path.parent, source)
        if not resolved.exists():
            problems.append(f"{where}: input {resolved} does not exist")
        mask, target = (str(row.get(k) or "").strip() or None for k in ("mask", "target"))
        if (mask is None) == (target is None):
            problems.append(f"{where}: give exactly one of mask and target")
        for kind, value in (("mask", mask), ("target", target)):
            if value is not None and not _resolve(path.parent, value).is_file():
                problems.append(f"{where}: {kind} {_resolve(path.parent, value)} does not exist")
        overrides = _overrides(row.get("overrides"))
        try:
            base_config.with_overrides(list(overrides))
        except ConfigError as exc:
            problems.append(f"{where}: {exc}")
        name = str(row.get("name") or "").strip() or resolved.stem
        if "/" in name or name.startswith("."):
            problems.append(f"{where}: output name {name!r} must be a plain folder name")
        if name in names:
            problems.append(f"{where}: output name {name!r} is also used on line {names[name]}")
        names.setdefault(name, line)
        jobs.append(
            ClipJob(
                name=name,
                input=str(resolved),
                mask=None if mask is None else str(_resolve(path.parent, mask)),
                target=None if target is None else str(_resolve(path.parent, target)),
                overrides=overrides,
            )
        )
    if not rows:
        problems.append(f"{path}: the manifest lists no clips")
    if problems:
        raise ManifestError("\n".join(problems))
    return jobs


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        for line, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{path.name}:{line}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ManifestError(f"{path.name}:{line}: each line must be a JSON object")
            yield line, row
        return
    reader = csv.DictReader(text.splitlines())
    for line, row in enumerate(reader, start=2):
        yield line, {k.strip(): v for k, v in row.items() if k is not None}


def _overrides(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, dict):
        return tuple(
            f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in value.items()
        )
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return tuple(p.strip() for p in str(value).split(CSV_OVERRIDE_SEPARATOR) if p.strip())


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


# --------------------------------------------------------------------------- one clip
class ClipRunner:
    """Loads the model once and processes clips (used in-process and inside Ray actors)."""

    def __init__(self, settings: BatchSettings) -> None:
        from persam_video.models import load_sam, model_metadata

        self.settings = settings
        self.sam = load_sam(settings.model, settings.checkpoint, settings.device, progress=False)
        self.metadata = model_metadata(settings.model, settings.checkpoint)

    def run(self, job: ClipJob, out_root: str) -> ClipOutcome:
        """Process one clip into ``out_root/<name>``; never raises for a bad clip."""
        from persam_video.pipeline import OutputOptions, track_to_folder
        from persam_video.targets import check_compatible, load_target, to_device
        from persam_video.tracker import VideoTracker

        out = Path(out_root)
        final = out / job.name
        work = out / f".{job.name}.partial-{os.getpid()}"
        start = time.perf_counter()
        shutil.rmtree(work, ignore_errors=True)
        try:
            config = PerSAMConfig.from_dict(self.settings.config).with_overrides(
                list(job.overrides)
            )
            targets = None
            if job.target is not None:
                loaded = load_target(job.target)
                check_compatible(loaded, self.metadata, job.target)
                targets = [to_device(loaded.target, self.sam.device)]
            summary = track_to_folder(
                VideoTracker(self.sam, config), job.input, job.mask, work, targets=targets,
                options=OutputOptions(**self.settings.outputs), progress=False,
                metadata=self.metadata,
            )  # fmt: skip
            if summary.status != "complete":
                raise ValueError(summary.error or f"tracking {summary.status}")
            record = {"name": job.name, "input": job.input, "frames": summary.frames,
                      "outputs": summary.outputs}  # fmt: skip
            _write_json(work / DONE_RECORD, record)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(work, final)
            return ClipOutcome(job.name, "done", summary.frames, time.perf_counter() - start)
        except Exception as exc:  # one bad clip must not stop the others
            shutil.rmtree(work, ignore_errors=True)
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return ClipOutcome(job.name, "failed", 0, time.perf_counter() - start, reason)


def is_done(out_root: Path, job: ClipJob) -> bool:
    """Whether ``job`` finished in an earlier run (its done record exists)."""
    return (out_root / job.name / DONE_RECORD).is_file()


# --------------------------------------------------------------------------- the batch
def run_batch(
    jobs: list[ClipJob],
    out_dir: str | os.PathLike[str],
    settings: BatchSettings,
    *,
    ray_address: str | None = None,
    workers: int = 1,
    gpus_per_worker: float = 0.0,
    on_outcome: Callable[[ClipOutcome], None] | None = None,
) -> list[ClipOutcome]:
    """Process every job not done yet; return one outcome per job (in manifest order).

    ``ray_address`` None runs locally in this process; ``"local"`` starts a local Ray cluster;
    anything else (``"auto"``, ``"ray://host:10001"``) connects to a running one.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / FAILURES).write_text("", encoding="utf-8")
    outcomes: dict[str, ClipOutcome] = {}
    todo = []
    for job in jobs:
        if is_done(out, job):
            outcomes[job.name] = ClipOutcome(job.name, "skipped")
        else:
            todo.append(job)
            for stale in out.glob(f".{job.name}.partial-*"):  # left by a killed run
                shutil.rmtree(stale, ignore_errors=True)

    def record(outcome: ClipOutcome) -> None:
        outcomes[outcome.name] = outcome
        if outcome.status == "failed":
            job = next(j for j in todo if j.name == outcome.name)
            with open(out / FAILURES, "a", encoding="utf-8") as f:
                f.write(json.dumps({"name": job.name, "input": job.input,
                                    "reason": outcome.reason}) + "\n")  # fmt: skip
        if on_outcome is not None:
            on_outcome(outcome)

    if todo:
        if ray_address is None:
            runner = ClipRunner(settings)
            for job in todo:
                record(runner.run(job, str(out)))
        else:
            from persam_video.batch_ray import run_on_ray

            run_on_ray(todo, str(out), settings, ray_address, workers, gpus_per_worker, record)
    return [outcomes[job.name] for job in jobs]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)
