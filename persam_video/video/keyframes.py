"""When SAM runs: the keyframe rules of ``keyframes`` in the config, as pure functions.

With ``mode: interval`` (``interval`` N), frames 0, N, 2N, ... are keyframes. With ``mode: auto``
a frame is a keyframe when carrying the masks along the flow (:func:`persam_video.video.flow.
propagate`) looks unreliable, or when ``max_gap`` frames have passed since the last keyframe.
The reasons, as written in results.json (``rekey``):

- ``flow``: more than ``max_dropped`` of an object's pixels fail the forward-backward check,
  or more than ``max_frame_inconsistent`` of the frame is inconsistent (a scene cut);
- ``border``: the flow moves more than ``max_leaving`` of an object's pixels out of the frame;
- ``area``: an object's carried area differs from its area on the last keyframe by more than the
  factor ``max_area_change`` (an object the flow lost entirely counts);
- ``gap``: ``max_gap`` frames since the last keyframe.

Frames with user annotations on them (prompted runs) are not handled here: prompted runs track
every frame (see :class:`persam_video.video.session.VideoSession`).
"""

from __future__ import annotations

from collections.abc import Mapping

from persam_video.config import KeyframesConfig
from persam_video.video.flow import Propagation

#: The reasons ``mode: auto`` gives for a keyframe, in the order they are checked.
REKEY_REASONS = ("gap", "flow", "border", "area")


def keyframe_due(config: KeyframesConfig, since_key: int) -> tuple[bool, str | None]:
    """Whether the schedule alone makes a frame a keyframe, ``since_key`` frames after the last
    keyframe (1 for the frame right after it), and the reason (``gap`` in auto mode)."""
    if config.mode == "auto":
        return (True, "gap") if since_key >= config.max_gap else (False, None)
    return since_key >= config.interval, None


def rekey_reason(
    config: KeyframesConfig, carried: Propagation, key_areas: Mapping[int, int]
) -> str | None:
    """Why ``carried`` is not good enough to skip SAM (``flow``, ``border``, ``area``), or None.

    ``key_areas``: each object id's area (pixels) on the last keyframe.
    """
    ids = carried.object_ids()
    if carried.frame_inconsistent > config.max_frame_inconsistent or any(
        carried.share(carried.dropped, i) > config.max_dropped for i in ids
    ):
        return "flow"
    if any(carried.share(carried.leaving, i) > config.max_leaving for i in ids):
        return "border"
    for obj_id, key_area in key_areas.items():
        if key_area <= 0:
            continue
        area = int(carried.areas[obj_id])
        if area == 0 or max(area / key_area, key_area / area) > config.max_area_change:
            return "area"
    return None


__all__ = ["REKEY_REASONS", "keyframe_due", "rekey_reason"]
