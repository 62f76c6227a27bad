"""When PerSAM's prediction counts as the target found (one rule for images and videos)."""

from __future__ import annotations

from persam_video.config import PresenceConfig
from persam_video.persam.cascade import Prediction


def is_found(pred: Prediction, presence: PresenceConfig) -> bool:
    """Whether ``pred`` confidently shows the target: a non-empty mask whose peak similarity and
    predicted score reach the ``presence`` thresholds."""
    if not bool(pred.mask.any()):
        return False
    return pred.peak_similarity >= presence.min_similarity and pred.score >= presence.min_score
