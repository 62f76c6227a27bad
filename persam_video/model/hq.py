"""HQ-SAM and Light HQ-SAM (Ke et al., NeurIPS 2023) from the official ``segment-anything-hq``.

HQ-SAM keeps SAM's image encoder, prompt encoder and two-way transformer and adds a
high-quality output token to the mask decoder (``MaskDecoderHQ``): its mask is predicted from
the decoder's upscaled features fused with an early encoder layer's features (the output of the
first global-attention block of the ViT, or of TinyViT's second stage in Light HQ-SAM), and
added to SAM's own mask logits (the official predictor's default, ``hq_token_only=False``).

The models are built by the package's own registry (``segment_anything_hq.sam_model_registry``)
and are the package's ``Sam``: it has the attributes and methods of segment-anything's ``Sam``
that persam-video uses (``image_encoder.img_size``, ``prompt_encoder``, ``mask_decoder``,
``preprocess``, ``postprocess_masks``, ``mask_threshold``), but its image encoder returns
``(features, intermediate embeddings)`` and its mask decoder needs the intermediate embeddings:
:mod:`persam_video.persam.encoder` keeps them with the frame's features and
:mod:`persam_video.persam.guided_decoder` passes them on. The official
``segment_anything_hq.SamPredictor`` runs on the models as they are.

Needs the ``hq`` extra: ``pip install 'persam-video[hq]'``.
"""

from __future__ import annotations

import warnings
from contextlib import nullcontext
from types import ModuleType
from typing import Any

import torch
from segment_anything.modeling import Sam

#: persam-video's model names -> the package registry's names.
HQ_MODELS = {
    "sam_hq_vit_b": "vit_b",
    "sam_hq_vit_l": "vit_l",
    "sam_hq_vit_h": "vit_h",
    "sam_hq_vit_tiny": "vit_tiny",
}
#: Module and name of segment-anything-hq's ``Sam`` class.
HQ_SAM_CLASS = ("segment_anything_hq.modeling.sam", "Sam")
#: The key only an HQ-SAM state dict has (the high-quality output token).
HQ_TOKEN_KEY = "mask_decoder.hf_token.weight"
INSTALL_HINT = (
    "mobile_sam and the HQ-SAM models need segment-anything-hq and timm: "
    "pip install 'persam-video[hq]' "
    '(from a checkout: pip install ".[hq]")'
)


class MissingExtraError(ImportError):
    """segment-anything-hq (or the timm it imports) is not installed; the message says what
    to install."""


def hq_package() -> ModuleType:
    """``segment_anything_hq``, imported on first use (an optional extra).

    Raises:
        MissingExtraError: segment-anything-hq or timm is not installed.
    """
    try:
        with warnings.catch_warnings():  # timm's deprecation notes and registry overwrites
            warnings.simplefilter("ignore")
            import segment_anything_hq
    except ImportError as exc:
        raise MissingExtraError(f"{INSTALL_HINT} ({exc})") from exc
    return segment_anything_hq


def build_hq_sam(name: str, *, seed: int | None = None) -> Sam:
    """A randomly initialised HQ-SAM ``name`` (a key of :data:`HQ_MODELS`), in eval mode, as the
    official registry builds it (without a checkpoint).

    ``seed`` makes the random weights reproducible without touching the global RNG.
    """
    build = hq_package().sam_model_registry[HQ_MODELS[name]]
    fork = torch.random.fork_rng(devices=[]) if seed is not None else nullcontext()
    with fork:
        if seed is not None:
            torch.manual_seed(seed)
        sam: Any = build(checkpoint=None)
    return sam.eval()


def is_hq_decoder(decoder: torch.nn.Module) -> bool:
    """Whether ``decoder`` is HQ-SAM's ``MaskDecoderHQ`` (it has the high-quality token)."""
    return hasattr(decoder, "hf_token")


def is_sam_model(model: object) -> bool:
    """Whether ``model`` is segment-anything's ``Sam`` or segment-anything-hq's (checked without
    importing the optional package)."""
    kind = type(model)
    return isinstance(model, Sam) or (kind.__module__, kind.__name__) == HQ_SAM_CLASS
