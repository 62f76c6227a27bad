"""How torch's thread count behaves on a busy machine: a short ``track`` (and optionally the test
suite) with each thread setting, on an idle machine and beside a competing CPU load.

Usage (from the repository root)::

    python tools/bench_threads.py                      # 12-frame track, demo model
    python tools/bench_threads.py --suite              # also the quick test suite (-m "not slow")
    python tools/bench_threads.py --load 1 --repeats 3

The competing load is ``--load`` processes spinning on the CPU (default: one per usable CPU
less one, so that one core is left). Each run is a fresh ``persam-video`` process (or pytest
process), so its thread setting takes effect from the start. ``auto`` is what ``--threads auto``
chose in that moment; ``torch default`` is torch's own choice (one thread per core), what a plain
run got before ``--threads`` existed. It prints the seconds of each run, and the best of the
repeats per setting.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from persam_video.runtime import THREAD_POOL_ENVS, THREADS_ENV, usable_cpus  # noqa: E402

#: Frames of the short track run, as in the issue that asked for these figures.
TRACK_FRAMES = 12
#: Thread settings compared: ``--threads`` values, and None for torch's own default.
SETTINGS: tuple[str | None, ...] = (None, "auto", "1", "2")


def spin() -> None:  # pragma: no cover - runs in a child process until killed
    while True:
        pass


@contextlib.contextmanager
def cpu_load(processes: int) -> Iterator[None]:
    """``processes`` busy-looping child processes for the duration of the block."""
    children = [multiprocessing.Process(target=spin, daemon=True) for _ in range(processes)]
    for child in children:
        child.start()
    time.sleep(2.0 if processes else 0.0)  # let the scheduler and the load average see them
    try:
        yield
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.join()


def environment(setting: str | None) -> dict[str, str]:
    """The environment of a run: ``$PERSAM_VIDEO_THREADS`` set to ``setting`` (torch's own
    default, one thread per core, when None), no thread-pool variables inherited."""
    env = {k: v for k, v in os.environ.items() if k not in (THREADS_ENV, *THREAD_POOL_ENVS)}
    env[THREADS_ENV] = setting if setting is not None else str(os.cpu_count() or 1)
    return env


def track_command(work: Path) -> list[str]:
    """A short ``persam-video track`` of the demo clip (threads from the environment)."""
    return [
        sys.executable,
        "-m",
        "persam_video.cli",
        "track",
        str(work / "input.mp4"),
        "--mask",
        str(work / "first_mask.png"),
        "--out",
        str(work / "out"),
        "-q",
        "--model",
        "demo",
        "--max-frames",
        str(TRACK_FRAMES),
    ]


def suite_command() -> list[str]:
    return [sys.executable, "-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider"]


def timed(command: list[str], env: dict[str, str], timeout: float) -> float | None:
    """Seconds the command took, or None when it failed or ran past ``timeout``."""
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    return time.perf_counter() - start if done.returncode == 0 else None


def prepare(work: Path) -> None:
    """The demo's generated clip and its first mask (written once, reused by every run)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "persam_video.cli",
            "demo",
            "--out",
            str(work),
            "-q",
            "--threads",
            "1",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )


def label(setting: str | None) -> str:
    return "torch default" if setting is None else f"--threads {setting}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--load",
        type=int,
        default=max(1, usable_cpus() - 1),
        help="busy processes of the loaded runs",
    )
    parser.add_argument("--repeats", type=int, default=2, help="runs per setting and load")
    parser.add_argument("--suite", action="store_true", help="also time the quick test suite")
    parser.add_argument("--suite-repeats", type=int, default=1, help="suite runs per setting")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run at most")
    args = parser.parse_args(argv)
    print(f"{usable_cpus()} usable CPUs; loaded runs beside {args.load} busy processes")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepare(work)
        jobs = [("track", track_command(work), SETTINGS, args.repeats)]
        if args.suite:
            jobs.append(("suite", suite_command(), (None, "auto", "1"), args.suite_repeats))
        for name, command, settings, repeats in jobs:
            for load in (0, args.load):
                with cpu_load(load):
                    for setting in settings:
                        env = environment(setting)
                        runs = [timed(command, env, args.timeout) for _ in range(repeats)]
                        shown = ", ".join(
                            "failed/timeout" if r is None else f"{r:.1f}" for r in runs
                        )
                        ok = [r for r in runs if r is not None]
                        best = f"best {min(ok):.1f} s" if ok else "no run finished"
                        where = "loaded" if load else "idle"
                        print(
                            f"{name:5} {where:6} {label(setting):14} {shown} s; {best}", flush=True
                        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
