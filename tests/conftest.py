"""Shared fixtures: small random-weight SAM models built from segment-anything's classes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from persam_video.model.spec import build_sam_from_spec, tiny_sam_spec
from persam_video.runtime import THREADS_ENV, apply_threads, choose_threads

# One CPU thread per test process (and for the commands tests start): on a 2-core machine with
# other work running, torch's default of one thread per core made the suite many times slower.
# Set PERSAM_VIDEO_THREADS (a number or auto) before pytest to choose otherwise.
apply_threads(choose_threads(os.environ.setdefault(THREADS_ENV, "1")))

#: Material shared by this workplace (PerSeg examples); absent in a clone elsewhere.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_sam():
    """A 128-px SAM with random weights (grid 8x8), for mechanics tests."""
    return build_sam_from_spec(tiny_sam_spec(), seed=0)


@pytest.fixture(scope="session")
def small_sam():
    """A 256-px SAM with random weights (grid 16x16) and wider layers."""
    return build_sam_from_spec(
        tiny_sam_spec(image_size=256, encoder_dim=48, encoder_depth=2, decoder_dim=64), seed=1
    )


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def fake_model(monkeypatch):
    """The command line loads a fresh tiny random-weight SAM instead of downloading one, and
    reports it as the model named on the command line."""
    import persam_video.cli.common as cli_common
    from persam_video.model import registry

    sam = build_sam_from_spec(tiny_sam_spec(), seed=0)
    monkeypatch.setattr(cli_common, "load_model", lambda *args, **kwargs: sam)
    monkeypatch.setattr(registry, "model_metadata", lambda name, checkpoint=None: {"model": name})
    return sam
