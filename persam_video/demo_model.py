"""The small demo SAM bundled with persam-video (a demo and test model, not SAM)."""

from __future__ import annotations

from segment_anything.modeling import Sam

from persam_video.weights import WeightsError

DEMO_MODEL_NAME = "demo"


def load_demo_sam() -> Sam:
    """Load the bundled demo model."""
    raise WeightsError("the demo model is not bundled in this build of persam-video yet")


def demo_model_sha256() -> str | None:
    """SHA-256 of the bundled weights file (None while none is bundled)."""
    return None
