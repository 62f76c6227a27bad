"""persam-video: one-shot video object segmentation with a personalized Segment Anything Model.

The public names are imported lazily, so ``import persam_video`` (and the command line's
``--help``) stays fast; torch and segment-anything load on first use of a model-related name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from persam_video._version import __version__

_EXPORTS = {
    "PerSAM": "persam_video.persam",
    "Target": "persam_video.persam",
    "SegmentResult": "persam_video.persam",
    "PerSAMConfig": "persam_video.config",
    "load_config": "persam_video.config",
    "load_sam": "persam_video.models",
    "build_sam": "persam_video.models",
    "SamSpec": "persam_video.models",
}

__all__ = [
    "PerSAM",
    "PerSAMConfig",
    "SamSpec",
    "SegmentResult",
    "Target",
    "__version__",
    "build_sam",
    "load_config",
    "load_sam",
]

if TYPE_CHECKING:
    from persam_video.config import PerSAMConfig, load_config
    from persam_video.models import SamSpec, build_sam, load_sam
    from persam_video.persam import PerSAM, SegmentResult, Target


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'persam_video' has no attribute {name!r}")
