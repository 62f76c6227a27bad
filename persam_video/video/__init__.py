"""Video: the tracker's per-video state, its rules, and the tracker itself.

- :mod:`~persam_video.video.state`: :class:`TrackState`, :class:`ObjectState` (explicit state,
  so one tracker follows several videos) and the per-frame results;
- :mod:`~persam_video.video.rules`: box prompts, fusion, absence and momentum (pure functions);
- :mod:`~persam_video.video.guards`: the jump guard and detached parts on PerSAM's decoded
  masks (pure functions);
- :mod:`~persam_video.video.tracker`: :class:`VideoTracker`, PerSAM frame after frame;
- :mod:`~persam_video.video.session`: :class:`VideoSession`, prompts on any frame propagated
  forward and backward;
- :mod:`~persam_video.video.flow`: dense optical flow and label propagation (keyframes);
- :mod:`~persam_video.video.keyframes`: when SAM runs (the keyframe rules).

Temporal propagation belongs here, beside the tracker.
"""

from persam_video.video.session import SessionResult, VideoSession
from persam_video.video.state import FrameResult, ObjectResult, ObjectState, TrackState
from persam_video.video.tracker import VideoTracker

__all__ = [
    "FrameResult",
    "ObjectResult",
    "ObjectState",
    "SessionResult",
    "TrackState",
    "VideoSession",
    "VideoTracker",
]
