"""Frame encoding: SAM's preprocessing and image encoder, with the speed options of a device.

The encoder does not depend on previous masks, so frames can be encoded ahead of the tracker in
batches. The encoder's attention is chosen here, not in the model: ``fast`` runs a view of the
image encoder with :class:`~persam_video.model.attention.FastAttention` (same parameters, same
features up to float rounding), ``stock`` runs segment-anything's own. On CUDA the encoder can
run under bf16/fp16 autocast (its output is cast back to float32 for the decoder) and through
``torch.compile``. On CPUs, ``int8`` runs a view of the encoder whose linear layers are
dynamically quantized to int8 (:mod:`persam_video.model.quantize`; attention stays float32).
The model is never modified.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from segment_anything.modeling import Sam

from persam_video.model.attention import fast_image_encoder
from persam_video.model.hq import is_hq_decoder
from persam_video.model.mobile import is_vit_encoder
from persam_video.model.quantize import int8_image_encoder
from persam_video.persam.features import FrameFeatures, preprocess
from persam_video.persam.guided_decoder import hq_features
from persam_video.runtime import default_threads

Precision = Literal["auto", "float32", "bfloat16", "float16", "int8"]
AttentionKind = Literal["fast", "stock"]
ATTENTION_KINDS: tuple[str, ...] = ("fast", "stock")
PRECISIONS: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16", "int8")
_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


class FrameEncoder:
    """Encode (H, W, 3) uint8 RGB frames into :class:`FrameFeatures`.

    Args:
        sam: the model (used as it is, never modified).
        attention: ``fast`` (SDPA attention sharing the model's parameters, on SAM's ViT
            encoders; other encoders such as MobileSAM's run as they are; the default) or
            ``stock`` (segment-anything's own image encoder).
        precision: ``float32``; ``bfloat16``/``float16`` run the image encoder under autocast;
            ``int8`` (CPUs only; a ``ValueError`` elsewhere) runs it with int8 linear layers;
            ``auto`` is ``bfloat16`` on CUDA devices that support it, else ``float32`` (int8
            changes the features slightly and was measured on random and demo weights only).
        batch_size: frames encoded per call by :meth:`encode_many` users (the tracker).
        compile: run the image encoder through ``torch.compile``.
    """

    def __init__(
        self,
        sam: Sam,
        *,
        attention: AttentionKind = "fast",
        precision: Precision = "float32",
        batch_size: int = 1,
        compile: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}")
        if attention not in ATTENTION_KINDS:
            raise ValueError(f"unknown attention {attention!r}; use {', '.join(ATTENTION_KINDS)}")
        default_threads()  # the command line's rule, for Python callers (once per process)
        self.sam = sam
        vit = is_vit_encoder(sam)
        # MobileSAM's TinyViT runs its own attention: nothing to rewrite
        self.attention = attention if vit else "stock"
        self.batch_size = batch_size
        self.precision = self._resolve(precision, sam.device)
        if not vit and self.precision == "int8":
            raise ValueError(
                "--precision int8 rewrites the linear layers of SAM's ViT encoder; this "
                "model's encoder is not one (use float32)"
            )
        image_encoder = sam.image_encoder
        if self.attention == "fast":
            image_encoder = fast_image_encoder(image_encoder)
        if self.precision == "int8":
            image_encoder = int8_image_encoder(image_encoder)
        #: The module that runs: the model's image encoder, or a view of it.
        self.image_encoder = image_encoder
        self.compile = compile
        self._encoder = torch.compile(image_encoder) if compile else image_encoder

    def settings(self) -> dict[str, str | int | bool]:
        """What shapes the features: attention, precision (resolved), batch size, compile."""
        return {
            "attention": self.attention,
            "precision": self.precision,
            "batch_frames": self.batch_size,
            "compile": self.compile,
        }

    @staticmethod
    def _resolve(precision: Precision, device: torch.device) -> str:
        if precision != "auto":
            return precision
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return "bfloat16"
        return "float32"

    @torch.inference_mode()
    def encode_many(self, frames: Sequence[np.ndarray]) -> list[FrameFeatures]:
        """Encode frames of one size in one encoder call (as in ``SamPredictor.set_image``)."""
        inputs, sizes = preprocess(self.sam, frames)
        if self.precision in _DTYPES:
            with torch.autocast(self.sam.device.type, dtype=_DTYPES[self.precision]):
                output = self._encoder(inputs)
        else:
            output = self._encoder(inputs)
        # HQ-SAM's encoders return (features, [early-layer features, ...]); its decoder fuses
        # the first of those with the embedding (as segment-anything-hq's SamPredictor does),
        # the same for every decoder call on the frame: fused once here
        embeddings, interm = output if isinstance(output, tuple) else (output, None)
        embeddings = embeddings.float()
        hq = None
        if interm is not None and is_hq_decoder(self.sam.mask_decoder):
            hq = hq_features(self.sam.mask_decoder, embeddings, interm[0].float())
        return [
            FrameFeatures(
                embedding=embeddings[i : i + 1],
                original_size=(int(frame.shape[0]), int(frame.shape[1])),
                input_size=size,
                image_size=self.sam.image_encoder.img_size,
                hq=None if hq is None else hq[i : i + 1],
            )
            for i, (frame, size) in enumerate(zip(frames, sizes, strict=True))
        ]

    def encode(self, frame: np.ndarray) -> FrameFeatures:
        """Encode one frame."""
        return self.encode_many([frame])[0]
