"""Exception types raised by :mod:`persam_video.io`.

Every message is a single line that names the offending file (or argument) and says what was
expected, so a command-line front end can print ``str(error)`` without a traceback.
"""

from __future__ import annotations

from pathlib import Path

from persam_video.labels import MaskError

__all__ = ["MaskError", "VideoDecodeError", "VideoReadError", "VideoWriteError"]


class VideoReadError(ValueError):
    """A frame source cannot be opened or yields invalid frames."""


class VideoDecodeError(VideoReadError):
    """Decoding stopped early: the video is truncated or corrupt.

    Raised by a :class:`~persam_video.io.reader.FrameSource` *after* every frame before
    ``frame_index`` has been yielded, so a caller can keep its partial results.
    """

    def __init__(self, path: str | Path, frame_index: int, detail: str) -> None:
        self.path = Path(path)
        self.frame_index = frame_index
        super().__init__(f"{path}: cannot decode frame {frame_index}: {detail}")


class VideoWriteError(RuntimeError):
    """Encoding or muxing an output video failed; no output file was left behind."""
