"""The :class:`Frame` record yielded by every frame source."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One decoded video frame.

    Attributes:
        index: position in the stream, ``0, 1, 2, ...`` with no gaps.
        time: presentation time in seconds from the start of the stream (the first frame of a
            video file is at ``0.0``; variable-frame-rate files keep their irregular times), or
            None when the source has no clock (a folder or iterable opened without ``fps``).
        rgb: ``(H, W, 3)`` ``uint8`` C-contiguous RGB pixels.
    """

    index: int
    time: float | None
    rgb: np.ndarray
