"""PerSAM: personalize SAM to a target from one (or a few) reference masks, then segment it.

In the order data flows through them:

- :mod:`~persam_video.persam.features`: SAM image features of a frame and their geometry;
- :mod:`~persam_video.persam.encoder`: :class:`FrameEncoder` (attention, precision, batching);
- :mod:`~persam_video.persam.prior`: target embedding, location prior, points, guidance map;
- :mod:`~persam_video.persam.guided_decoder`: SAM's mask decoder with target-guided attention
  and target-semantic prompting;
- :mod:`~persam_video.persam.cascade`: the first step and cascaded post-refinement;
- :mod:`~persam_video.persam.geometry`: boxes, areas and coordinates;
- :mod:`~persam_video.persam.components`: regions of low-resolution masks grown by a margin;
- :mod:`~persam_video.persam.rules`: when a prediction counts as the target found;
- :mod:`~persam_video.persam.finetune`: PerSAM-F mask weights;
- :mod:`~persam_video.persam.api`: :class:`PerSAM`, :class:`Target`, :class:`SegmentResult`.

Image and video modes both run this code; the video layer adds state, not math.
"""

from persam_video.persam.api import PerSAM, SegmentResult, Target, check_image
from persam_video.persam.cascade import ExtraPrompt, Prediction
from persam_video.persam.encoder import FrameEncoder
from persam_video.persam.features import FrameFeatures

__all__ = [
    "ExtraPrompt",
    "FrameEncoder",
    "FrameFeatures",
    "PerSAM",
    "Prediction",
    "SegmentResult",
    "Target",
    "check_image",
]
