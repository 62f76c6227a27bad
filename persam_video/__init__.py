"""persam-video: one-shot video object segmentation with a personalized Segment Anything Model.

The public names are imported lazily, so ``import persam_video`` (and the command line's
``--help``) stays fast; torch and segment-anything load on first use of a model-related name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from persam_video._version import __version__

_EXPORTS = {
    # image mode
    "PerSAM": "persam_video.persam.api",
    "Target": "persam_video.persam.api",
    "SegmentResult": "persam_video.persam.api",
    "FrameEncoder": "persam_video.persam.encoder",
    # video
    "VideoTracker": "persam_video.video.tracker",
    "FrameResult": "persam_video.video.state",
    "ObjectResult": "persam_video.video.state",
    "TrackState": "persam_video.video.state",
    "VideoSession": "persam_video.video.session",
    "track_to_folder": "persam_video.apps.track",
    "OutputOptions": "persam_video.apps.track",
    "TrackSummary": "persam_video.apps.track",
    "RunStatus": "persam_video.apps.track",
    # configuration and models
    "PerSAMConfig": "persam_video.config",
    "load_config": "persam_video.config",
    "load_sam": "persam_video.model.registry",
    "build_sam": "persam_video.model.spec",
    "SamSpec": "persam_video.model.spec",
    # I/O
    "open_source": "persam_video.io",
    "read_mask": "persam_video.io",
}

__all__ = [
    "FrameEncoder",
    "FrameResult",
    "ObjectResult",
    "OutputOptions",
    "PerSAM",
    "PerSAMConfig",
    "RunStatus",
    "SamSpec",
    "SegmentResult",
    "Target",
    "TrackState",
    "TrackSummary",
    "VideoSession",
    "VideoTracker",
    "__version__",
    "build_sam",
    "load_config",
    "load_sam",
    "open_source",
    "read_mask",
    "track_to_folder",
]

if TYPE_CHECKING:
    from persam_video.apps.track import OutputOptions, RunStatus, TrackSummary, track_to_folder
    from persam_video.config import PerSAMConfig, load_config
    from persam_video.io import open_source, read_mask
    from persam_video.model.registry import load_sam
    from persam_video.model.spec import SamSpec, build_sam
    from persam_video.persam.api import PerSAM, SegmentResult, Target
    from persam_video.persam.encoder import FrameEncoder
    from persam_video.video.session import VideoSession
    from persam_video.video.state import FrameResult, ObjectResult, TrackState
    from persam_video.video.tracker import VideoTracker


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'persam_video' has no attribute {name!r}")
