"""Video and mask I/O for persam-video: streaming readers, atomic writers, mask files.

The rules for label maps themselves live in :mod:`persam_video.labels` (re-exported here).
"""

from persam_video.io.errors import MaskError, VideoDecodeError, VideoReadError, VideoWriteError
from persam_video.io.frame import Frame
from persam_video.io.masks import (
    DAVIS_PALETTE,
    read_mask,
    read_mask_sources,
    resize_labels,
    write_label_png,
)
from persam_video.io.probe import VideoInfo, probe
from persam_video.io.reader import (
    FrameSource,
    image_size_hw,
    list_images,
    natural_key,
    open_source,
    parse_fps,
    read_image,
)
from persam_video.io.writer import AlphaVideoWriter, VideoWriter
from persam_video.labels import MAX_OBJECTS, VOID_ID, MaskSources, object_ids, to_label_map

__all__ = [
    "DAVIS_PALETTE",
    "MAX_OBJECTS",
    "VOID_ID",
    "AlphaVideoWriter",
    "Frame",
    "FrameSource",
    "MaskError",
    "MaskSources",
    "VideoDecodeError",
    "VideoInfo",
    "VideoReadError",
    "VideoWriteError",
    "VideoWriter",
    "image_size_hw",
    "list_images",
    "natural_key",
    "object_ids",
    "open_source",
    "parse_fps",
    "probe",
    "read_image",
    "read_mask",
    "read_mask_sources",
    "resize_labels",
    "to_label_map",
    "write_label_png",
]
