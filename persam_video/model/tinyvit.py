"""MobileSAM's TinyViT image encoder, from the official ``segment-anything-hq`` wheel.

The encoder comes from a maintained package, not from copied code: ``segment_anything_hq.
modeling.TinyViT`` with MobileSAM's hyper-parameters loads the ``image_encoder.*`` weights of a
checkpoint in MobileSAM's format strictly and gives the same features as MobileSAM's own code.
Its ``forward`` returns ``(features, intermediate embeddings)`` for HQ-SAM's decoder and
assumes a 1024-px input; :class:`MobileSAMEncoder` subclasses it to return the features alone, as
segment-anything's ``Sam`` and ``SamPredictor`` expect, at any input size (the small
TinyViT-style models trained here run at 256 px).

``segment-anything-hq`` (and the ``timm`` it imports without declaring it) come with the ``hq``
extra: ``pip install ".[hq]"``.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import torch
from segment_anything.modeling.common import LayerNorm2d

from persam_video.model.hq import hq_package

#: TinyViT's other hyper-parameters, as MobileSAM sets them.
TINYVIT_FIXED: dict[str, Any] = {
    "in_chans": 3,
    "num_classes": 1000,
    "mlp_ratio": 4.0,
    "drop_rate": 0.0,
    "drop_path_rate": 0.0,
    "use_checkpoint": False,
    "mbconv_expand_ratio": 4.0,
    "local_conv_size": 3,
    "layer_lr_decay": 0.8,
}
#: The width of TinyViT's neck in segment-anything-hq (SAM's prompt width).
TINYVIT_NECK_DIM = 256
#: The key only a TinyViT encoder's state dict has (its first convolution).
TINYVIT_KEY = "image_encoder.patch_embed.seq.0.c.weight"


@cache
def encoder_class() -> type[torch.nn.Module]:
    """:class:`MobileSAMEncoder`, made on first use (segment-anything-hq is an optional extra).

    Raises:
        MissingExtraError: segment-anything-hq or timm is not installed.
    """
    tinyvit: Any = hq_package().modeling.TinyViT

    class MobileSAMEncoder(tinyvit):
        """segment-anything-hq's TinyViT returning the image features alone, at any input size.

        ``forward``: (B, 3, S, S) normalized, padded images -> (B, C, S/16, S/16); MobileSAM's
        S is 1024 and C 256. segment-anything-hq's own ``forward`` also returns HQ-SAM's
        intermediate embeddings and assumes S = 1024; ``out_chans`` other than 256 replaces
        the neck with one of that width (the small models trained here).
        """

        def __init__(self, *, out_chans: int = TINYVIT_NECK_DIM, **settings: Any) -> None:
            super().__init__(**settings)
            if out_chans != TINYVIT_NECK_DIM:
                width = settings["embed_dims"][-1]
                self.neck = torch.nn.Sequential(
                    torch.nn.Conv2d(width, out_chans, kernel_size=1, bias=False),
                    LayerNorm2d(out_chans),
                    torch.nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
                    LayerNorm2d(out_chans),
                )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            tokens = self.patch_embed(x)
            for layer in self.layers:
                tokens = layer(tokens)
            batch, _, channels = tokens.shape
            side = x.shape[-1] // 16
            grid = tokens.view(batch, side, side, channels).permute(0, 3, 1, 2)
            return self.neck(grid)

    return MobileSAMEncoder


def tinyvit_encoder(out_chans: int, **settings: Any) -> torch.nn.Module:
    """A randomly initialised TinyViT image encoder: segment-anything-hq ``TinyViT`` keyword
    arguments (``img_size``, ``embed_dims``, ``depths``, ``num_heads``, ``window_sizes``; the
    others default to :data:`TINYVIT_FIXED`) and the width of its output."""
    return encoder_class()(out_chans=out_chans, **{**TINYVIT_FIXED, **settings})
