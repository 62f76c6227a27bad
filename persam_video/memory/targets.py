"""Targets for the memory engine: PerSAM's target embedding from a memory tracker's features.

``personalize --model sam2.1_hiera_tiny`` makes a target file like any other (the embedding, the
model that made it), from the tracker's own image features (the lowest-resolution level of its
feature pyramid, before any memory conditioning) inside the reference mask, and records how the
embedding stood out on the reference photo (:attr:`~persam_video.persam.api.Target.
reference_similarity`): the bar a candidate must reach in another video
(:mod:`persam_video.memory.redetect`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from persam_video.memory.models import MemoryModel
from persam_video.memory.redetect import grid_mask, reference, similarity
from persam_video.persam.api import Target


def personalize(model: MemoryModel, shots: Sequence[tuple[np.ndarray, np.ndarray]]) -> Target:
    """A target from (H, W, 3) uint8 RGB photos and their (H, W) bool masks of the object.

    With several shots the embedding is the mean of the shots' embeddings (each counts equally),
    and its reference similarity the mean over the shots of its similarity inside and outside.

    Raises:
        ValueError: a mask covers no feature cell, or every cell.
    """
    embeddings, grids = [], []
    with torch.inference_mode():
        for index, (rgb, mask) in enumerate(shots):
            _, features = model.features(model.pixels(rgb))
            ref = reference(features, torch.from_numpy(np.asarray(mask, bool)))
            if ref is None:
                raise ValueError(
                    f"the mask of shot {index + 1} covers no cell of the model's feature grid, "
                    "or all of them: draw it around the object only"
                )
            embeddings.append(ref.embedding)
            grid = (int(features.shape[-2]), int(features.shape[-1]))
            cells = grid_mask(torch.from_numpy(np.asarray(mask, bool)), grid)
            grids.append((features, cells))
        embedding = F.normalize(torch.stack(embeddings).mean(dim=0), dim=0)
        inside = [float(similarity(f, embedding)[cells].mean()) for f, cells in grids]
        outside = [float(similarity(f, embedding)[~cells].mean()) for f, cells in grids]
    return Target(embedding, None, None, (float(np.mean(inside)), float(np.mean(outside))))
