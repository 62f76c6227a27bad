"""Seed convention that keeps training, validation and test data disjoint.

Every procedural clip or training stream is generated from one *global seed*. A split owns a
contiguous, non-overlapping range of global seeds::

    global_seed = SPLIT_SEED_OFFSETS[split] + seed,    0 <= seed < SPLIT_SEED_RANGE

so ``("train", s)`` and ``("test", s)`` never share a global seed, whatever ``s`` is. Training code
must draw its random generator from :func:`split_rng` with ``split="train"``; evaluation and demo
code use ``"val"`` or ``"test"`` (the default of :func:`persam_video.synthetic.make_clip`).

Which test seeds are for what: the demo command and the tests use small ``"test"`` seeds (from 0);
benchmarks (``tools/bench_quality.py``) use ``"test"`` seeds from :data:`BENCHMARK_FIRST_SEED`
up, for :func:`~persam_video.synthetic.make_clip`'s mixed clips as for the clip families
(:mod:`persam_video.synthetic.families`, which draw from streams of their own). No ``"test"``
seed is ever used in training, whatever its value.
"""

from __future__ import annotations

import numpy as np

SPLIT_SEED_RANGE = 1 << 40
"""Number of seeds in each split; a per-split seed must lie in ``[0, SPLIT_SEED_RANGE)``."""

BENCHMARK_FIRST_SEED = 1000
"""First ``"test"`` seed of benchmark sets (smaller test seeds are the demo's and the tests')."""

TRAIN_SEED_OFFSET = 0
VAL_SEED_OFFSET = SPLIT_SEED_RANGE
TEST_SEED_OFFSET = 2 * SPLIT_SEED_RANGE

SPLIT_SEED_OFFSETS: dict[str, int] = {
    "train": TRAIN_SEED_OFFSET,
    "val": VAL_SEED_OFFSET,
    "test": TEST_SEED_OFFSET,
}
SPLITS: tuple[str, ...] = tuple(SPLIT_SEED_OFFSETS)


def split_seed(split: str, seed: int) -> int:
    """Map a per-split seed to its global seed.

    Arguments:
      split (str): one of ``"train"``, ``"val"``, ``"test"``.
      seed (int): per-split seed in ``[0, SPLIT_SEED_RANGE)``.

    Returns:
      (int): the global seed, unique across all splits.
    """
    if split not in SPLIT_SEED_OFFSETS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    seed = int(seed)
    if not 0 <= seed < SPLIT_SEED_RANGE:
        raise ValueError(f"seed must lie in [0, {SPLIT_SEED_RANGE}), got {seed}")
    return SPLIT_SEED_OFFSETS[split] + seed


def split_rng(split: str, seed: int) -> np.random.Generator:
    """A fresh random generator for ``seed`` of ``split`` (e.g. one per training worker)."""
    return np.random.default_rng(split_seed(split, seed))
