"""One clip of a batch: the job, its outcome, and the runner that loads the model once.

Each clip is tracked into ``OUT/.<name>.partial-<pid>/``; when all of its outputs are written, a
``done.json`` record is added and the folder is renamed to ``OUT/<name>/``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from persam_video.atomic import atomic_folder, write_text
from persam_video.config import load_json

if TYPE_CHECKING:
    from persam_video.apps.engines import EngineConfig

DONE_RECORD = "done.json"
#: The batch's record of failed clips, and of its settings, in the output folder.
FAILURES = "failures.jsonl"
RUN_RECORD = "batch.json"
#: The reports of ``find`` in its output folder.
FOUND_JSON, FOUND_CSV, FOUND_HTML = "found.json", "found.csv", "found.html"


class ClipStatus(str, Enum):
    """What happened to a clip."""

    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


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
    status: ClipStatus
    frames: int = 0
    seconds: float = 0.0
    reason: str | None = None


class ClipTask(Protocol):
    """What a batch does with each clip (picklable: it travels to Ray workers with the
    settings). :class:`TrackTask` tracks it (``batch``); ``find`` searches it for targets."""

    #: The command recorded as the owner of the output folder.
    command: ClassVar[str]
    #: The reports the task writes beside the clips' folders (claimed with them).
    reports: ClassVar[tuple[str, ...]]

    def record(self) -> dict[str, Any]:
        """What the task's results depend on, beyond the model and config (kept in
        ``batch.json``: a rerun with another record is refused)."""
        ...

    def run(
        self, runner: ClipRunner, job: ClipJob, config: EngineConfig, work: Path
    ) -> tuple[int, dict[str, Any]]:
        """Process ``job`` into the empty folder ``work``; return the frames processed and what
        to add to its done record. Raise for a clip that fails (``KeyboardInterrupt`` stops the
        batch)."""
        ...


@dataclass(frozen=True)
class TrackTask:
    """Track each clip from its first-frame mask or saved target (what ``batch`` does)."""

    command: ClassVar[str] = "batch"
    reports: ClassVar[tuple[str, ...]] = ()

    def record(self) -> dict[str, Any]:
        """Nothing beyond the settings' own fields (``batch.json`` keeps its older form)."""
        return {}

    def run(
        self, runner: ClipRunner, job: ClipJob, config: EngineConfig, work: Path
    ) -> tuple[int, dict[str, Any]]:
        """Track ``job`` into ``work`` with the settings' outputs (a target on a memory
        tracker both ways from where it is found, as ``track --target``)."""
        from persam_video.apps.prompted import track_prompts_to_folder
        from persam_video.apps.target_file import check_compatible, load_target, to_device
        from persam_video.apps.track import OutputOptions, track_to_folder

        settings = runner.settings
        options = OutputOptions(**settings.outputs)
        engine = runner.model.engine(config)
        targets = None
        if job.target is not None:
            loaded = load_target(job.target)
            check_compatible(loaded, runner.metadata, job.target)
            targets = [to_device(loaded.target, runner.model.device)]
        if targets is not None and runner.model.is_memory:
            summary = track_prompts_to_folder(
                engine,
                job.input,
                [],
                work,
                targets=list(enumerate(targets, start=1)),
                options=options,
                progress=False,
                metadata=runner.metadata,
            )
        else:
            summary = track_to_folder(
                engine,
                job.input,
                job.mask,
                work,
                targets=targets,
                options=options,
                progress=False,
                resize_mask=settings.resize_mask,
                metadata=runner.metadata,
            )
        check_complete(summary)
        return summary.frames, {"outputs": summary.outputs}


def check_complete(summary: Any) -> None:
    """Raise unless a :class:`~persam_video.apps.track.TrackSummary` is complete: Ctrl-C
    stops the batch (``KeyboardInterrupt``), anything else fails the clip."""
    from persam_video.apps.track import RunStatus

    if summary.status == RunStatus.INTERRUPTED:  # Ctrl-C stops the batch, not a clip
        raise KeyboardInterrupt
    if summary.status != RunStatus.COMPLETE:
        raise ValueError(summary.error or f"tracking {summary.status}")


@dataclass
class BatchSettings:
    """What every clip shares: model, config, outputs and the task (picklable, sent to Ray
    workers)."""

    model: str
    checkpoint: str | None
    device: str
    config: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)
    #: Resize first-frame masks of another size than their clip (nearest neighbour).
    resize_mask: bool = False
    #: What is done with each clip.
    task: ClipTask = field(default_factory=TrackTask)


class ClipRunner:
    """Loads the model once and processes clips (used in-process and inside Ray actors)."""

    def __init__(self, settings: BatchSettings) -> None:
        from persam_video.apps.engines import load_engine_model

        self.settings = settings
        self.model = load_engine_model(settings.model, settings.checkpoint, settings.device)
        self.metadata = self.model.metadata

    def run(self, job: ClipJob, out_root: str) -> ClipOutcome:
        """Process one clip into ``out_root/<name>``; never raises for a bad clip."""
        from persam_video.apps.engines import engine_config

        start = time.perf_counter()
        try:
            config = engine_config(self.settings.model, self.settings.config, job.overrides)
            with atomic_folder(Path(out_root) / job.name) as work:
                frames, extra = self.settings.task.run(self, job, config, work)
                record = {
                    "name": job.name,
                    "input": job.input,
                    "frames": frames,
                    **extra,
                    "clip": job_record(job),
                }
                write_text(work / DONE_RECORD, json.dumps(record, indent=1))
            elapsed = time.perf_counter() - start
            return ClipOutcome(job.name, ClipStatus.DONE, frames, elapsed)
        except Exception as exc:  # one bad clip must not stop the others
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            elapsed = time.perf_counter() - start
            return ClipOutcome(job.name, ClipStatus.FAILED, 0, elapsed, reason)


def job_record(job: ClipJob) -> dict[str, Any]:
    """What a finished clip was made from: inputs and overrides (compared on a rerun)."""
    return {
        "input": job.input,
        "mask": job.mask,
        "target": job.target,
        "overrides": list(job.overrides),
    }


def is_done(out_root: Path, job: ClipJob) -> bool:
    """Whether ``job`` finished in an earlier run from the same inputs and overrides (its done
    record exists and says so)."""
    path = out_root / job.name / DONE_RECORD
    if not path.is_file():
        return False
    try:
        done = load_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(done, dict) and done.get("clip", job_record(job)) == job_record(job)


def settings_record(settings: BatchSettings) -> dict[str, Any]:
    """What every clip of a batch shares and its results depend on (not the device)."""
    return {
        "model": settings.model,
        "checkpoint": settings.checkpoint,
        "config": settings.config,
        "outputs": settings.outputs,
        "resize_mask": settings.resize_mask,
        **settings.task.record(),
    }
