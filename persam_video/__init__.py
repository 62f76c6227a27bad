"""persam-video: one-shot video object segmentation with a personalized Segment Anything Model.

One documented path per tier (docs/python-api.md):

* models: :func:`load_sam` (an official checkpoint, downloaded and verified, or the demo model);
* images: :class:`PerSAM` (``personalize`` a :class:`Target`, ``segment`` a photo);
* a video, frame by frame: a :class:`VideoTracker` (model and config) and a
  :class:`VideoSession` on the video (``add_mask`` / ``add_points`` / ``add_box`` /
  ``add_target`` on any frame, then ``propagate`` forward, backward or both);
* a video into an output folder (masks, videos, report, results.json; what ``persam-video
  track`` runs): :func:`track_to_folder` (a first-frame mask or saved targets) and
  :func:`track_prompts_to_folder` (prompts on any frame, :class:`PromptSpec`);
* engines: :class:`Engine` and :class:`TrackingSession`, the interface every path above uses
  (:class:`PerSAMEngine` is PerSAM's).

The public names are imported lazily, so ``import persam_video`` (and the command line's
``--help``) stays fast; torch and segment-anything load on first use of a model-related name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from persam_video._version import __version__

_EXPORTS = {
    # models and configuration
    "load_sam": "persam_video.model.registry",
    "PerSAMConfig": "persam_video.config",
    "load_config": "persam_video.config",
    # images
    "PerSAM": "persam_video.persam.api",
    "Target": "persam_video.persam.api",
    "SegmentResult": "persam_video.persam.api",
    # a video, frame by frame
    "VideoTracker": "persam_video.video.tracker",
    "VideoSession": "persam_video.video.session",
    "FrameResult": "persam_video.video.state",
    "ObjectResult": "persam_video.video.state",
    # a video into an output folder
    "track_to_folder": "persam_video.apps.track",
    "track_prompts_to_folder": "persam_video.apps.prompted",
    "PromptSpec": "persam_video.apps.prompted",
    "OutputOptions": "persam_video.apps.outputs",
    "TrackSummary": "persam_video.apps.outputs",
    "RunStatus": "persam_video.apps.outputs",
    # engines
    "Engine": "persam_video.video.engine",
    "TrackingSession": "persam_video.video.engine",
    "PerSAMEngine": "persam_video.video.engine",
}

__all__ = [
    "Engine",
    "FrameResult",
    "ObjectResult",
    "OutputOptions",
    "PerSAM",
    "PerSAMConfig",
    "PerSAMEngine",
    "PromptSpec",
    "RunStatus",
    "SegmentResult",
    "Target",
    "TrackSummary",
    "TrackingSession",
    "VideoSession",
    "VideoTracker",
    "__version__",
    "load_config",
    "load_sam",
    "track_prompts_to_folder",
    "track_to_folder",
]

if TYPE_CHECKING:
    from persam_video.apps.outputs import OutputOptions, RunStatus, TrackSummary
    from persam_video.apps.prompted import PromptSpec, track_prompts_to_folder
    from persam_video.apps.track import track_to_folder
    from persam_video.config import PerSAMConfig, load_config
    from persam_video.model.registry import load_sam
    from persam_video.persam.api import PerSAM, SegmentResult, Target
    from persam_video.video.engine import Engine, PerSAMEngine, TrackingSession
    from persam_video.video.session import VideoSession
    from persam_video.video.state import FrameResult, ObjectResult
    from persam_video.video.tracker import VideoTracker


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'persam_video' has no attribute {name!r}")
