"""SAM architectures built from segment-anything's own classes: :class:`SamSpec` and
:func:`build_sam_from_spec`.

Every model is an unmodified :class:`segment_anything.modeling.Sam`, so the stock
``SamPredictor`` works on it. Small models (for tests and the bundled demo model) are described
by a :class:`SamSpec`; the official ones are ``SamSpec()`` (vit_b) and segment-anything's
registry.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import torch
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

from persam_video.model.tinyvit import tinyvit_encoder

#: SAM's pixel normalization (ImageNet statistics in 0-255 RGB), shared by all models here.
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
LAYER_NORM_EPS = 1e-6
NUM_MULTIMASK_OUTPUTS = 3
IOU_HEAD_DEPTH = 3
MLP_RATIO = 4

#: Encoder width and depth of the official architectures, to recognise a checkpoint's kind.
OFFICIAL_SHAPES = {(1280, 32): "vit_h", (1024, 24): "vit_l", (768, 12): "vit_b"}
#: Image encoders a :class:`SamSpec` describes: segment-anything's ViT, or MobileSAM's TinyViT
#: (from segment-anything-hq, the ``hq`` extra; its total stride is 16, as the ViT's patches).
VIT, TINYVIT = "vit", "tinyvit"
#: Stages of a TinyViT (a convolutional stage, then three attention stages).
TINYVIT_STAGES = 4


@dataclass(frozen=True)
class SamSpec:
    """Architecture of a SAM built from segment-anything's classes.

    The defaults are SAM ViT-B; a small model only needs a few fields changed, e.g.
    ``SamSpec(image_size=256, encoder_dim=96, encoder_depth=4, encoder_heads=4,
    encoder_global_attn=(3,), window_size=8, decoder_dim=128, decoder_mlp_dim=512)``.
    """

    image_size: int = 1024
    patch_size: int = 16
    encoder_dim: int = 768
    encoder_depth: int = 12
    encoder_heads: int = 12
    encoder_global_attn: tuple[int, ...] = (2, 5, 8, 11)
    window_size: int = 14
    decoder_dim: int = 256
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16
    #: ``vit`` (the fields above describe it) or ``tinyvit`` (the four ``tinyvit_*`` fields
    #: describe its stages: widths, blocks, attention heads and window sides).
    encoder_kind: str = VIT
    tinyvit_dims: tuple[int, ...] = ()
    tinyvit_depths: tuple[int, ...] = ()
    tinyvit_heads: tuple[int, ...] = ()
    tinyvit_windows: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.encoder_kind not in (VIT, TINYVIT):
            raise ValueError(
                f"encoder_kind must be {VIT!r} or {TINYVIT!r}, not {self.encoder_kind!r}"
            )
        if self.encoder_kind == TINYVIT:
            stages = [getattr(self, name) for name in _TINYVIT_FIELDS]
            if any(len(values) != TINYVIT_STAGES for values in stages) or self.patch_size != 16:
                raise ValueError(
                    f"a TinyViT spec needs {TINYVIT_STAGES} values in each tinyvit_* field and "
                    "patch_size 16"
                )
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}"
            )
        if any(not 0 <= i < self.encoder_depth for i in self.encoder_global_attn):
            raise ValueError(
                f"encoder_global_attn {self.encoder_global_attn} must index blocks "
                f"0..{self.encoder_depth - 1}"
            )

    @property
    def grid_size(self) -> int:
        """Side of the image-embedding grid (64 for the official models)."""
        return self.image_size // self.patch_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamSpec:
        data = dict(data)
        for key in ("encoder_global_attn", *_TINYVIT_FIELDS):
            data[key] = tuple(data.get(key, ()))
        return cls(**data)


_TINYVIT_FIELDS = ("tinyvit_dims", "tinyvit_depths", "tinyvit_heads", "tinyvit_windows")


def tinyvit_settings(spec: SamSpec) -> dict[str, Any]:
    """segment-anything-hq ``TinyViT`` keyword arguments for ``spec``'s encoder."""
    return {
        "img_size": spec.image_size,
        "embed_dims": list(spec.tinyvit_dims),
        "depths": list(spec.tinyvit_depths),
        "num_heads": list(spec.tinyvit_heads),
        "window_sizes": list(spec.tinyvit_windows),
    }


def image_encoder_for(spec: SamSpec) -> torch.nn.Module:
    """The image encoder ``spec`` describes: (B, 3, S, S) -> (B, decoder_dim, S/16, S/16)."""
    if spec.encoder_kind == TINYVIT:
        return tinyvit_encoder(spec.decoder_dim, **tinyvit_settings(spec))
    return ImageEncoderViT(
        img_size=spec.image_size,
        patch_size=spec.patch_size,
        embed_dim=spec.encoder_dim,
        depth=spec.encoder_depth,
        num_heads=spec.encoder_heads,
        mlp_ratio=MLP_RATIO,
        out_chans=spec.decoder_dim,
        qkv_bias=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=LAYER_NORM_EPS),
        use_rel_pos=True,
        window_size=spec.window_size,
        global_attn_indexes=spec.encoder_global_attn,
    )


def build_sam_from_spec(spec: SamSpec, *, seed: int | None = None) -> Sam:
    """A randomly initialised SAM of architecture ``spec`` (in eval mode).

    ``seed`` makes the random weights reproducible without touching the global RNG.
    """
    fork = torch.random.fork_rng(devices=[]) if seed is not None else nullcontext()
    with fork:
        if seed is not None:
            torch.manual_seed(seed)
        grid = spec.grid_size
        sam = Sam(
            image_encoder=image_encoder_for(spec),
            prompt_encoder=PromptEncoder(
                embed_dim=spec.decoder_dim,
                image_embedding_size=(grid, grid),
                input_image_size=(spec.image_size, spec.image_size),
                mask_in_chans=spec.mask_in_chans,
            ),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=NUM_MULTIMASK_OUTPUTS,
                transformer=TwoWayTransformer(
                    depth=spec.decoder_depth,
                    embedding_dim=spec.decoder_dim,
                    mlp_dim=spec.decoder_mlp_dim,
                    num_heads=spec.decoder_heads,
                ),
                transformer_dim=spec.decoder_dim,
                iou_head_depth=IOU_HEAD_DEPTH,
                iou_head_hidden_dim=spec.iou_head_hidden_dim,
            ),
            pixel_mean=list(PIXEL_MEAN),
            pixel_std=list(PIXEL_STD),
        )
    return sam.eval()


def tiny_sam_spec(
    image_size: int = 128,
    encoder_dim: int = 32,
    encoder_depth: int = 2,
    decoder_dim: int = 32,
) -> SamSpec:
    """A very small architecture for mechanics tests (random weights run in milliseconds)."""
    return SamSpec(
        image_size=image_size,
        encoder_dim=encoder_dim,
        encoder_depth=encoder_depth,
        encoder_heads=2,
        encoder_global_attn=(encoder_depth - 1,),
        window_size=4,
        decoder_dim=decoder_dim,
        decoder_heads=2,
        decoder_mlp_dim=2 * decoder_dim,
        iou_head_hidden_dim=decoder_dim,
        mask_in_chans=4,
    )
