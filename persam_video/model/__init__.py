"""Models: SAM architectures, checkpoints, the bundled demo model, and a faster attention.

- :mod:`~persam_video.model.spec`: :class:`SamSpec` and :func:`build_sam` (segment-anything's
  own classes, any size);
- :mod:`~persam_video.model.checkpoints`: the official checkpoints, cache and verified downloads;
- :mod:`~persam_video.model.demo`: the bundled small demo model (not SAM);
- :mod:`~persam_video.model.registry`: :func:`load_sam` by name;
- :mod:`~persam_video.model.attention`: the SDPA attention of the image encoder, as a view that
  shares the model's parameters (the model is never modified).
- :mod:`~persam_video.model.quantize`: the int8 image encoder for CPUs (dynamically quantized
  linear layers, float32 attention), also a view (the model is never modified).
"""

from persam_video.model.checkpoints import WeightsError
from persam_video.model.registry import load_sam, model_metadata, model_names, resolve_device
from persam_video.model.spec import NUM_MULTIMASK_OUTPUTS, SamSpec, build_sam, tiny_sam_spec

__all__ = [
    "NUM_MULTIMASK_OUTPUTS",
    "SamSpec",
    "WeightsError",
    "build_sam",
    "load_sam",
    "model_metadata",
    "model_names",
    "resolve_device",
    "tiny_sam_spec",
]
