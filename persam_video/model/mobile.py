"""MobileSAM: SAM's prompt encoder and mask decoder behind a TinyViT-5M image encoder.

The encoder comes from a maintained package, not from copied code: the official
``segment-anything-hq`` wheel ships MobileSAM's TinyViT (``segment_anything_hq.modeling.TinyViT``),
which with MobileSAM's hyper-parameters (:data:`TINYVIT_SETTINGS`) loads the ``image_encoder.*``
weights of a checkpoint in MobileSAM's format strictly and gives the same features as MobileSAM's
own code. Its ``forward`` returns ``(features, intermediate embeddings)`` for HQ-SAM's decoder;
:class:`MobileSAMEncoder` subclasses it to return the (B, 256, 64, 64) features alone, as
segment-anything's ``Sam`` and ``SamPredictor`` expect. The prompt encoder and mask decoder are
segment-anything's own, so every PerSAM mechanism applies unchanged and ``SamPredictor`` runs on
the model.

``segment-anything-hq`` (and the ``timm`` it imports without declaring it) come with the ``hq``
extra: ``pip install ".[hq]"``.
"""

from __future__ import annotations

import warnings
from functools import cache
from typing import Any

import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from persam_video.model.spec import IOU_HEAD_DEPTH, NUM_MULTIMASK_OUTPUTS, PIXEL_MEAN, PIXEL_STD

MOBILE_SAM_NAME = "mobile_sam"
#: MobileSAM's TinyViT-5M (``build_sam_vit_t`` of the official code).
TINYVIT_SETTINGS: dict[str, Any] = {
    "img_size": 1024,
    "in_chans": 3,
    "num_classes": 1000,
    "embed_dims": [64, 128, 160, 320],
    "depths": [2, 2, 6, 2],
    "num_heads": [2, 4, 5, 10],
    "window_sizes": [7, 7, 14, 7],
    "mlp_ratio": 4.0,
    "drop_rate": 0.0,
    "drop_path_rate": 0.0,
    "use_checkpoint": False,
    "mbconv_expand_ratio": 4.0,
    "local_conv_size": 3,
    "layer_lr_decay": 0.8,
}
#: SAM's prompt side at 1024 px input: 256 channels on a 64 x 64 grid.
PROMPT_DIM, GRID, IMAGE_SIZE = 256, 64, 1024
MASK_IN_CHANS, DECODER_DEPTH, DECODER_MLP_DIM, DECODER_HEADS = 16, 2, 2048, 8
#: The key only a TinyViT encoder's state dict has (its first convolution).
TINYVIT_KEY = "image_encoder.patch_embed.seq.0.c.weight"
#: What to install when segment-anything-hq is missing.
INSTALL_HINT = (
    "mobile_sam needs segment-anything-hq and timm: pip install 'persam-video[hq]' "
    '(from a checkout: pip install ".[hq]")'
)


@cache
def encoder_class() -> type[torch.nn.Module]:
    """:class:`MobileSAMEncoder`, made on first use (segment-anything-hq is an optional extra).

    Raises:
        ImportError: segment-anything-hq or timm is not installed (the message says what to
            install).
    """
    try:
        with warnings.catch_warnings():  # timm's deprecation notes and registry overwrites
            warnings.simplefilter("ignore")
            from segment_anything_hq.modeling import TinyViT
    except ImportError as exc:
        raise ImportError(f"{INSTALL_HINT} ({exc})") from exc

    class MobileSAMEncoder(TinyViT):
        """segment-anything-hq's TinyViT returning the image features alone.

        ``forward``: (B, 3, 1024, 1024) normalized, padded images -> (B, 256, 64, 64).
        """

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            features, _ = self.forward_features(x)
            return features

    return MobileSAMEncoder


def build_mobile_sam(*, seed: int | None = None) -> Sam:
    """A randomly initialised MobileSAM (eval mode): TinyViT-5M and SAM's prompt side.

    ``seed`` makes the random weights reproducible without touching the global RNG.
    """
    encoder = encoder_class()
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        sam = Sam(
            image_encoder=encoder(**TINYVIT_SETTINGS),
            prompt_encoder=PromptEncoder(
                embed_dim=PROMPT_DIM,
                image_embedding_size=(GRID, GRID),
                input_image_size=(IMAGE_SIZE, IMAGE_SIZE),
                mask_in_chans=MASK_IN_CHANS,
            ),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=NUM_MULTIMASK_OUTPUTS,
                transformer=TwoWayTransformer(
                    depth=DECODER_DEPTH,
                    embedding_dim=PROMPT_DIM,
                    mlp_dim=DECODER_MLP_DIM,
                    num_heads=DECODER_HEADS,
                ),
                transformer_dim=PROMPT_DIM,
                iou_head_depth=IOU_HEAD_DEPTH,
                iou_head_hidden_dim=PROMPT_DIM,
            ),
            pixel_mean=list(PIXEL_MEAN),
            pixel_std=list(PIXEL_STD),
        )
    return sam.eval()


def is_vit_encoder(sam: Sam) -> bool:
    """Whether ``sam``'s image encoder is segment-anything's ViT (what the faster attention and
    the int8 view rewrite); MobileSAM's TinyViT is not."""
    from segment_anything.modeling import ImageEncoderViT

    return isinstance(sam.image_encoder, ImageEncoderViT)
