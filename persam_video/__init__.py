"""persam-video: one-shot video object segmentation with a personalized Segment Anything Model."""

from persam_video._version import __version__

__all__ = ["__version__"]
