"""MobileSAM: SAM's prompt encoder and mask decoder behind a TinyViT-5M image encoder.

The encoder is segment-anything-hq's TinyViT (:mod:`persam_video.model.tinyvit`) with
MobileSAM's hyper-parameters (:data:`MOBILE_SAM_SPEC`); the prompt encoder and mask decoder are
segment-anything's own, so every PerSAM mechanism applies unchanged and ``SamPredictor`` runs on
the model. Needs the ``hq`` extra: ``pip install ".[hq]"``.
"""

from __future__ import annotations

from segment_anything.modeling import Sam

from persam_video.model.spec import TINYVIT, SamSpec, build_sam_from_spec, tinyvit_settings
from persam_video.model.tinyvit import TINYVIT_FIXED

MOBILE_SAM_NAME = "mobile_sam"
#: MobileSAM's TinyViT-5M (``build_sam_vit_t`` of the official code) with SAM's prompt side.
MOBILE_SAM_SPEC = SamSpec(
    encoder_kind=TINYVIT,
    tinyvit_dims=(64, 128, 160, 320),
    tinyvit_depths=(2, 2, 6, 2),
    tinyvit_heads=(2, 4, 5, 10),
    tinyvit_windows=(7, 7, 14, 7),
)
#: MobileSAM's encoder as segment-anything-hq's ``build_sam_vit_t`` builds it.
TINYVIT_SETTINGS = {**TINYVIT_FIXED, **tinyvit_settings(MOBILE_SAM_SPEC)}


def build_mobile_sam(*, seed: int | None = None) -> Sam:
    """A randomly initialised MobileSAM (eval mode): TinyViT-5M and SAM's prompt side.

    ``seed`` makes the random weights reproducible without touching the global RNG.
    """
    return build_sam_from_spec(MOBILE_SAM_SPEC, seed=seed)


#: Module and name of segment-anything-hq's copy of SAM's ViT encoder (same blocks and
#: attention; its ``forward`` also returns the early-layer features HQ-SAM's decoder fuses).
HQ_VIT_CLASS = ("segment_anything_hq.modeling.image_encoder", "ImageEncoderViT")


def is_vit_encoder(sam: Sam) -> bool:
    """Whether ``sam``'s image encoder is SAM's ViT, segment-anything's or HQ-SAM's (what the
    faster attention and the int8 view rewrite); MobileSAM's TinyViT is not."""
    from segment_anything.modeling import ImageEncoderViT

    kind = type(sam.image_encoder)
    return isinstance(sam.image_encoder, ImageEncoderViT) or (
        (kind.__module__, kind.__name__) == HQ_VIT_CLASS
    )
