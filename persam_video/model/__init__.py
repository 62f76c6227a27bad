"""Models: SAM architectures, checkpoints, the bundled demo model, and a faster attention.

- :mod:`~persam_video.model.spec`: :class:`SamSpec` and :func:`build_sam_from_spec`
  (segment-anything's own classes, any size);
- :mod:`~persam_video.model.checkpoints`: the official checkpoints, cache and verified downloads;
- :mod:`~persam_video.model.demo`: the bundled small demo model (not SAM);
- :mod:`~persam_video.model.registry`: :func:`load_sam` by name;
- :mod:`~persam_video.model.attention`: the SDPA attention of the image encoder, as a view that
  shares the model's parameters (the model is never modified).
- :mod:`~persam_video.model.quantize`: the int8 image encoder for CPUs (dynamically quantized
  linear layers, float32 attention), also a view (the model is never modified).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from persam_video.model.checkpoints import WeightsError
    from persam_video.model.registry import load_sam, model_metadata, model_names, resolve_device
    from persam_video.model.spec import (
        NUM_MULTIMASK_OUTPUTS,
        SamSpec,
        build_sam_from_spec,
        tiny_sam_spec,
    )

#: Where each public name lives, imported on first use: ``persam_video.model.checkpoints``
#: (the checkpoint table, used by ``weights list``) loads without torch.
_HOMES = {
    "WeightsError": "checkpoints",
    "load_sam": "registry",
    "model_metadata": "registry",
    "model_names": "registry",
    "resolve_device": "registry",
    "NUM_MULTIMASK_OUTPUTS": "spec",
    "SamSpec": "spec",
    "build_sam_from_spec": "spec",
    "tiny_sam_spec": "spec",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = [
    "NUM_MULTIMASK_OUTPUTS",
    "SamSpec",
    "WeightsError",
    "build_sam_from_spec",
    "load_sam",
    "model_metadata",
    "model_names",
    "resolve_device",
    "tiny_sam_spec",
]
