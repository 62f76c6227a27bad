"""Process-wide settings: huge pages (before torch allocates memory) and CPU threads.

PyTorch's CPU allocator takes large buffers straight from the operating system and gives them
back when freed, so each of SAM's big activations (tens of MB per encoder block) is page-faulted
anew, 4 KB at a time, on every frame. On the 2-core CPU this project is developed on, the stock
vit_b encoder spent more time in those page faults (kernel time) than in its matrix multiplies.
With ``THP_MEM_ALLOC_ENABLE=1`` (PyTorch >= 2.2) buffers of 2 MB or more are backed by transparent
huge pages: 512 times fewer faults. The variable is read once, at torch's first allocation.

Nothing here imports torch at module level (the command line's ``--help`` stays fast).
"""

from __future__ import annotations

import os
import time

#: PyTorch's switch for transparent-huge-page backed CPU buffers.
HUGE_PAGES_ENV = "THP_MEM_ALLOC_ENABLE"


def prefer_huge_pages() -> bool:
    """Enable huge-page backed CPU buffers unless the user set ``THP_MEM_ALLOC_ENABLE`` already.

    Only has an effect before torch's first CPU allocation (call it before ``import torch``).
    Returns whether the setting is on.
    """
    os.environ.setdefault(HUGE_PAGES_ENV, "1")
    return os.environ[HUGE_PAGES_ENV] not in ("", "0")


#: Environment variable that sets the default of ``--threads`` (an integer, or ``auto``).
THREADS_ENV = "PERSAM_VIDEO_THREADS"
#: Environment variables of the thread pools torch and its libraries start with.
THREAD_POOL_ENVS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: Most CPU threads ``--threads`` (and ``$PERSAM_VIDEO_THREADS``) may ask for: far more threads
#: than any machine has cores only slow torch down, and tens of thousands crash its thread
#: pool (a segmentation fault).
MAX_THREADS = 256


#: Longest value of ``--threads`` quoted back in an error (characters).
MAX_SHOWN_CHARS = 20


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask; all CPUs where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


#: How long :func:`busy_cpus` watches the machine, in seconds.
BUSY_SAMPLE_S = 0.25
#: Fields of /proc/stat's ``cpu`` line that are work: user, nice, system, irq, softirq, steal
#: (not idle and iowait). Niced work counts: measured here, a 2-thread track beside a nice-19
#: job ran 5x slower than with 1 thread, as beside work at normal priority.
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)
_ALL_FIELDS = 8


def busy_cpus() -> float:
    """How many CPUs other processes keep busy right now.

    Read from /proc/stat over :data:`BUSY_SAMPLE_S` seconds (niced work counts too: a thread
    that waits for a core the scheduler lent to it stalls the others all the same); where that
    file does not exist, the 1-minute load average.
    """
    first = _cpu_times()
    if first is None:
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):  # not available on this platform
            return 0.0
    time.sleep(BUSY_SAMPLE_S)
    second = _cpu_times()
    if second is None:
        return 0.0
    delta = [b - a for a, b in zip(first, second, strict=True)]
    total = sum(delta[:_ALL_FIELDS])
    if total <= 0:
        return 0.0
    busy = sum(delta[i] for i in _BUSY_FIELDS)
    return (os.cpu_count() or 1) * busy / total


def _cpu_times() -> list[int] | None:
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) <= _ALL_FIELDS:
        return None
    return [int(value) for value in fields[1 : _ALL_FIELDS + 1]]


def choose_threads(requested: int | str | None = None) -> int:
    """How many CPU threads torch should use.

    ``requested`` (or ``$PERSAM_VIDEO_THREADS`` when None) is an integer from 1 to
    :data:`MAX_THREADS`, or ``auto`` (the default): the usable CPUs less those other processes
    keep busy right now (:func:`busy_cpus`, rounded), at least 1. On a busy machine every
    thread of a parallel region waits for the slowest, and a thread that the scheduler takes
    away stalls them all: fewer threads than cores then run many times faster than one per
    core. Anything else is a ``ValueError`` (naming the variable when it came from there).
    """
    value = requested if requested is not None else os.environ.get(THREADS_ENV, "auto")
    text = str(value).strip()
    if text.lower() != "auto":
        where = f"${THREADS_ENV}" if requested is None else "threads"
        wrong = ValueError(
            f"{where} must be a positive integer or auto (at most {MAX_THREADS} "
            f"threads), got {text[:MAX_SHOWN_CHARS]!r}"
        )
        if len(text) > MAX_SHOWN_CHARS:  # no int() of thousands of digits
            raise wrong
        try:
            count = int(text)
        except ValueError:
            raise wrong from None
        if not 1 <= count <= MAX_THREADS:
            raise wrong
        return count
    cpus = usable_cpus()
    return max(1, min(cpus, round(cpus - busy_cpus())))


_threads_chosen = False  # apply_threads ran, or default_threads decided, in this process


def apply_threads(count: int) -> int:
    """Use ``count`` CPU threads in torch, and in the thread pools of libraries and child
    processes started later (their environment variables). Imports torch. Returns ``count``."""
    global _threads_chosen
    for name in THREAD_POOL_ENVS:
        os.environ[name] = str(count)
    import torch

    torch.set_num_threads(count)
    _threads_chosen = True
    return count


def default_threads() -> int | None:
    """The command line's thread rule for Python callers, once per process (called when a
    model is first set up to run, by :class:`~persam_video.persam.encoder.FrameEncoder`).

    Nothing changes when threads were chosen already: :func:`apply_threads` was called, or
    ``$OMP_NUM_THREADS`` is set. ``$PERSAM_VIDEO_THREADS`` is applied as the command line
    applies it. Otherwise torch keeps at most ``choose_threads("auto")`` threads (fewer set by
    the caller stay): torch's default of one thread per core runs many times slower on a busy
    machine. Returns the count applied, or None when nothing changed.
    """
    global _threads_chosen
    if _threads_chosen:
        return None
    _threads_chosen = True
    if THREADS_ENV in os.environ:
        return apply_threads(choose_threads())
    if "OMP_NUM_THREADS" in os.environ:
        return None
    import torch

    count = choose_threads("auto")
    return apply_threads(count) if torch.get_num_threads() > count else None
