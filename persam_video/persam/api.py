"""The PerSAM API: personalize SAM with one reference image and mask, then segment other images.

>>> from persam_video import load_sam, PerSAM, PerSAMConfig
>>> persam = PerSAM(load_sam("vit_b"), PerSAMConfig.paper_image())
>>> target = persam.personalize(ref_rgb, ref_mask)   # (H, W, 3) uint8 RGB, (H, W) bool
>>> res = persam.segment(img_rgb, target)            # res.mask: (H, W) bool

The math lives in :mod:`persam_video.persam.prior` and :mod:`persam_video.persam.cascade`; this
module validates inputs and converts results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from segment_anything.modeling import Sam
from torch import Tensor

from persam_video.config import PerSAMConfig
from persam_video.labels import binary_mask
from persam_video.model.hq import is_sam_model
from persam_video.persam.cascade import ExtraPrompt, Prediction, segment_objects
from persam_video.persam.encoder import FrameEncoder
from persam_video.persam.features import FrameFeatures
from persam_video.persam.prior import pool_embedding, reference_cells

if TYPE_CHECKING:
    from persam_video.persam.finetune import FinetuneResult


@dataclass
class Target:
    """A personalized target: what PerSAM looks for."""

    #: (C,) float target embedding: pooled SAM features of the reference mask (not normalized);
    #: with several reference shots, the mean of their embeddings.
    embedding: Tensor
    #: (3,) PerSAM-F weights of SAM's three multimask outputs, or None without fine-tuning.
    mask_weights: Tensor | None = None
    #: How the PerSAM-F training went (weights, steps, seconds, steps_per_second, losses), or
    #: None.
    finetune_info: dict[str, Any] | None = None
    #: (inside, outside): mean cosine similarity of the embedding to the reference mask's
    #: feature cells and to the other cells, where the engine needs them (the memory engine's
    #: re-detection bar, :mod:`persam_video.memory.redetect`); None otherwise.
    reference_similarity: tuple[float, float] | None = None


@dataclass
class SegmentResult:
    """PerSAM's result on one image."""

    #: (H, W) bool mask.
    mask: np.ndarray
    #: SAM's predicted IoU of the mask.
    score: float
    #: (N, 2) float (x, y) point prompts in image pixels.
    points: np.ndarray
    #: (N,) int labels of the points: 1 positive, 0 negative.
    labels: np.ndarray
    #: (H, W) float32 location confidence (cosine similarity to the target).
    similarity: np.ndarray
    #: (1, 4h, 4w) float32 final low-resolution mask logits.
    logits: np.ndarray

    @classmethod
    def from_prediction(cls, pred: Prediction) -> SegmentResult:
        return cls(
            mask=pred.mask.cpu().numpy(),
            score=pred.score,
            points=pred.points.cpu().numpy(),
            labels=pred.labels.cpu().numpy(),
            similarity=pred.similarity.float().cpu().numpy(),
            logits=pred.low_res_logits.float().cpu().numpy(),
        )


class PerSAM:
    """A SAM model personalized by PerSAM. The model is used as is and never modified."""

    def __init__(
        self,
        sam: Sam,
        config: PerSAMConfig | None = None,
        encoder: FrameEncoder | None = None,
        *,
        progress: bool = False,
    ) -> None:
        if not is_sam_model(sam):
            raise ValueError(
                "sam must be a segment-anything or segment-anything-hq Sam model, got "
                f"{type(sam).__name__}"
            )
        self.sam = sam
        self.config = config if config is not None else PerSAMConfig()
        #: How frames are encoded (precision, batching, compile); float32 by default.
        self.encoder = encoder if encoder is not None else FrameEncoder(sam)
        #: Show progress bars of long steps (PerSAM-F training) on a terminal.
        self.progress = progress

    @property
    def device(self) -> torch.device:
        return self.sam.device

    @torch.inference_mode()
    def encode(self, image: np.ndarray) -> FrameFeatures:
        """SAM image features of an (H, W, 3) uint8 RGB image."""
        return self.encoder.encode(check_image(image))

    @torch.inference_mode()
    def embed(self, feats: FrameFeatures, mask: np.ndarray) -> Tensor:
        """(C,) target embedding of the object in ``mask`` (H, W) on already-encoded features."""
        binary = binary_mask(mask, feats.original_size)
        if not binary.any():
            raise ValueError("the mask is empty: mark the object with nonzero pixels")
        cells = reference_cells(self.sam, feats, binary, self.config.prior)
        return pool_embedding(feats, cells, self.config.prior.pool)

    def personalize(self, ref_image: np.ndarray, ref_mask: np.ndarray) -> Target:
        """Learn the target from a reference image (H, W, 3) uint8 RGB and its mask (H, W).

        The mask may be bool, or numeric with values {0, 1} or {0, 255}. With
        ``config.finetune.enabled`` the PerSAM-F mask weights are learned too.
        """
        return self.personalize_shots([(ref_image, ref_mask)])

    def personalize_shots(self, shots: list[tuple[np.ndarray, np.ndarray]]) -> Target:
        """Learn one target from several (image, mask) reference shots.

        The embedding is the mean of the shots' embeddings (each shot counts equally, whatever
        the object's size in it); PerSAM-F weights are fit to all shots at once.
        """
        if not shots:
            raise ValueError("personalizing needs at least one (image, mask) shot")
        encoded = [(self.encode(image), mask) for image, mask in shots]
        embeddings = []
        for index, (feats, mask) in enumerate(encoded):
            try:
                embeddings.append(self.embed(feats, mask))
            except ValueError as exc:
                if len(shots) == 1:
                    raise
                raise ValueError(f"reference shot {index + 1}: {exc}") from None
        target = Target(embedding=torch.stack(embeddings).mean(0))
        if self.config.finetune.enabled:
            shots_bool = [(f, binary_mask(mask, f.original_size)) for f, mask in encoded]
            result = self.finetune(target, shots_bool)
            target.mask_weights = result.weights
            target.finetune_info = result.info()
        return target

    def finetune(
        self, target: Target, shots: list[tuple[FrameFeatures, np.ndarray]]
    ) -> FinetuneResult:
        """PerSAM-F: learn the mask weights of ``target`` on encoded shots and (H, W) bool masks."""
        from persam_video.persam.finetune import fit_mask_weights

        with torch.inference_mode(False), torch.enable_grad():
            embedding = target.embedding.clone()
            torch_shots = [(f, torch.from_numpy(m).to(self.device).clone()) for f, m in shots]
            return fit_mask_weights(
                self.sam, self.config, embedding, torch_shots, progress=self.progress
            )

    def segment(self, image: np.ndarray, target: Target) -> SegmentResult:
        """Segment ``target`` in an (H, W, 3) uint8 RGB image."""
        if not isinstance(target, Target):
            raise ValueError(f"target must be a Target, got {type(target).__name__}")
        (pred,) = self.segment_features(self.encode(image), [target])
        return SegmentResult.from_prediction(pred)

    @torch.inference_mode()
    def segment_features(
        self,
        feats: FrameFeatures,
        targets: list[Target],
        extra: list[ExtraPrompt] | None = None,
    ) -> list[Prediction]:
        """Segment several targets on encoded features at once (used by the video tracker)."""
        embeddings = torch.stack([t.embedding for t in targets]).to(feats.embedding)
        expected = feats.embedding.shape[1]
        if embeddings.shape[1] != expected:
            raise ValueError(
                f"target embeddings have {embeddings.shape[1]} channels, this model {expected}: "
                "the target was made with another model"
            )
        weights = [t.mask_weights for t in targets]
        return segment_objects(self.sam, feats, embeddings, self.config, extra, weights)


def check_image(image: np.ndarray) -> np.ndarray:
    """Validate an (H, W, 3) uint8 RGB image; return it C-contiguous."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array (H, W, 3) uint8, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3) (RGB), got {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (0-255), got {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty: shape {image.shape}")
    return np.ascontiguousarray(image)
