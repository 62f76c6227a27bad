"""Export one frame of a video or folder as an image (to draw a mask on, for example)."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from persam_video.atomic import atomic_file, check_not_overwriting, check_writable_file
from persam_video.io import open_source

#: Formats a frame may be written in, by file extension (lossless first).
FRAME_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


def export_frame(
    source: str | os.PathLike[str], index: int, out_path: str | os.PathLike[str]
) -> tuple[int, int]:
    """Write frame ``index`` (0-based, decoding order) of ``source`` to ``out_path``, atomically.

    Returns the frame's (H, W). Raises ``ValueError`` for an index past the last frame (saying
    how many frames there are) or an unknown image extension.
    """
    out = Path(out_path)
    kind = FRAME_FORMATS.get(out.suffix.lower())
    if kind is None:
        raise ValueError(f"{out}: write the frame as {', '.join(FRAME_FORMATS)}")
    if index < 0:
        raise ValueError(f"frame index must be >= 0, got {index}")
    check_not_overwriting([source], [out])
    check_writable_file(out)
    seen = 0
    with open_source(source, prefetch=0) as frames:
        for frame in frames:
            seen += 1
            if frame.index == index:
                with atomic_file(out) as tmp:
                    Image.fromarray(frame.rgb).save(tmp, format=kind)
                return frame.rgb.shape[:2]
    raise ValueError(
        f"frame {index} is past the last frame: {source} has {seen} frames (0-{seen - 1})"
    )
