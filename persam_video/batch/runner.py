"""Many clips: a manifest (:mod:`~persam_video.batch.manifest`) processed locally or on a Ray
cluster, resumable, failures isolated.

Each clip is tracked into a temporary folder inside ``OUT`` (see :mod:`persam_video.atomic`);
when all of its outputs are written, a ``done.json`` record is added and the folder is renamed
to ``OUT/<name>/``. A rerun skips clips
whose ``done.json`` exists and redoes the others, so killing a run and starting it again gives
the same final outputs as an uninterrupted run. A clip that fails (unreadable, corrupt, ...) is
recorded in ``OUT/failures.jsonl`` and the others go on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from persam_video.apps.run_record import check_run_record
from persam_video.atomic import append_line, run_folder, write_text
from persam_video.batch.clip import (
    DONE_RECORD,
    FAILURES,
    RUN_RECORD,
    BatchSettings,
    ClipJob,
    ClipOutcome,
    ClipRunner,
    ClipStatus,
    is_done,
    settings_record,
)
from persam_video.batch.ray_backend import run_on_ray


def run_batch(
    jobs: list[ClipJob],
    out_dir: str | os.PathLike[str],
    settings: BatchSettings,
    *,
    ray_address: str | None = None,
    workers: int = 1,
    gpus_per_worker: float = 0.0,
    on_outcome: Callable[[ClipOutcome], None] | None = None,
    on_finish: Callable[[Path, list[ClipOutcome]], None] | None = None,
) -> list[ClipOutcome]:
    """Process every job not done yet; return one outcome per job (in manifest order).

    ``ray_address`` None runs locally in this process; ``"local"`` starts a local Ray cluster;
    anything else (``"auto"``, ``"ray://host:10001"``) connects to a running one. ``on_finish``
    is called with the output folder and the outcomes once every clip is done or failed,
    while the folder is still locked (``find`` writes its reports there); not after Ctrl-C.
    """
    task = settings.task
    names = [RUN_RECORD, FAILURES, *task.reports, *(job.name for job in jobs)]
    with run_folder(out_dir, task.command, names) as claim:
        claim.record(pending=names)  # a clip moved into place is ours even if we die then
        try:
            return _run_claimed(
                jobs,
                claim.folder,
                settings,
                ray_address,
                workers,
                gpus_per_worker,
                on_outcome,
                on_finish,
            )
        finally:
            claim.record()


def _run_claimed(
    jobs: list[ClipJob],
    out: Path,
    settings: BatchSettings,
    ray_address: str | None,
    workers: int,
    gpus_per_worker: float,
    on_outcome: Callable[[ClipOutcome], None] | None,
    on_finish: Callable[[Path, list[ClipOutcome]], None] | None,
) -> list[ClipOutcome]:
    """:func:`run_batch` once the output folder is locked and claimed."""
    check_run_record(out / RUN_RECORD, settings_record(settings))
    redone: set[str] = set()
    write_text(out / FAILURES, "")
    outcomes: dict[str, ClipOutcome] = {}
    todo = []
    for job in jobs:
        if is_done(out, job):
            outcomes[job.name] = ClipOutcome(job.name, ClipStatus.SKIPPED)
        else:
            if (out / job.name / DONE_RECORD).is_file():  # finished, from other inputs
                redone.add(job.name)
            todo.append(job)

    def record(outcome: ClipOutcome) -> None:
        if outcome.name in redone and outcome.status == ClipStatus.DONE:
            outcome.reason = "redone: its inputs or overrides changed"
        outcomes[outcome.name] = outcome
        if outcome.status == ClipStatus.FAILED:
            job = next(j for j in todo if j.name == outcome.name)
            append_line(
                out / FAILURES,
                json.dumps({"name": job.name, "input": job.input, "reason": outcome.reason}),
            )
        if on_outcome is not None:
            on_outcome(outcome)

    if todo:
        if ray_address is None:
            runner = ClipRunner(settings)
            for job in todo:
                record(runner.run(job, str(out)))
        else:
            run_on_ray(todo, str(out), settings, ray_address, workers, gpus_per_worker, record)
    ordered = [outcomes[job.name] for job in jobs]
    if on_finish is not None:
        on_finish(out, ordered)
    return ordered
