"""Running a batch on Ray: one actor per worker loads the model once and processes clips.

This follows Ray's pattern for stateful (GPU) inference: actors created with ``num_gpus`` hold
the model, and a :class:`ray.util.ActorPool` hands them clips as they become free. Ray is an
optional extra: from a checkout, ``pip install ".[ray]"``.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from persam_video.batch.clip import BatchSettings, ClipJob, ClipOutcome, ClipRunner

#: CPUs reserved per actor; the model's own threads use what the node gives the process.
CPUS_PER_WORKER = 1


def import_ray() -> ModuleType:
    """Import Ray, or explain how to install it."""
    try:
        import ray
    except ImportError:
        raise ValueError(
            "--ray needs Ray: pip install '.[ray]' in a checkout of persam-video "
            "(or pip install ray)"
        ) from None
    return ray


def run_on_ray(
    jobs: list[ClipJob],
    out_dir: str,
    settings: BatchSettings,
    address: str,
    workers: int,
    gpus_per_worker: float,
    record: Callable[[ClipOutcome], None],
) -> None:
    """Process ``jobs`` on Ray actors; call ``record`` with each outcome as it arrives."""
    ray = import_ray()
    from ray.util import ActorPool

    started_here = not ray.is_initialized()
    if started_here:
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        worker_class = ray.remote(num_cpus=CPUS_PER_WORKER, num_gpus=gpus_per_worker)(ClipRunner)
        actors = [worker_class.remote(settings) for _ in range(max(1, workers))]
        pool = ActorPool(actors)
        for outcome in pool.map_unordered(lambda actor, job: actor.run.remote(job, out_dir), jobs):
            record(outcome)
    finally:
        if started_here:
            ray.shutdown()
