"""PerSAM's target-guided attention and target-semantic prompting inside a memory tracker's
mask decoder, through the decoder's own arguments.

transformers' SAM 2-family mask decoders take ``attention_similarity`` (added to the attention
logits of the tokens attending to the image) and ``target_embedding`` (added to the tokens
before every block): PerSAM's two decoder mechanisms. The video models call the decoder once
per object and frame, in object order, without passing either; :func:`decoder_guidance` gives
the i-th decoder call of one tracker step the i-th object's inputs, through a forward pre-hook
that is removed when the step ends (the model is the same before and after; a lock keeps two
sessions sharing one model from mixing their inputs).

Shapes: features (C, h, w), the tracker's lowest-resolution image features (the grid its mask
decoder attends to); embeddings (C,) unit-norm.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from persam_video.memory.redetect import similarity

#: One tracker step with guidance at a time (the hook is on the shared model's decoder).
_GUIDED = threading.Lock()


def decoder_inputs(
    features: Tensor, embedding: Tensor, *, guided_attention: bool, semantic_prompt: bool
) -> dict[str, Tensor]:
    """The decoder arguments of one object on one frame.

    ``attention_similarity`` (1, 1, 1, h * w): sigmoid of the cosine similarity map of the
    target embedding to the frame's cells, standardized over the cells (PerSAM's attention
    map, added to the token-to-image attention logits); ``target_embedding`` (1, 1, 1, C): the
    target embedding scaled to the features' mean norm (the decoder adds it to its tokens).
    """
    inputs: dict[str, Tensor] = {}
    if guided_attention:
        sim = similarity(features, embedding).flatten()
        std = sim.std().clamp_min(torch.finfo(sim.dtype).eps)
        inputs["attention_similarity"] = ((sim - sim.mean()) / std).sigmoid()[None, None, None]
    if semantic_prompt:
        scale = features.flatten(1).norm(dim=0).mean()
        inputs["target_embedding"] = (embedding * scale)[None, None, None]
    return inputs


@contextmanager
def decoder_guidance(
    decoder: torch.nn.Module, per_call: Sequence[dict[str, Tensor] | None]
) -> Iterator[None]:
    """Within the block, the i-th call of ``decoder`` also gets ``per_call[i]`` (tensors moved
    to the decoder's device); calls beyond the list, or given None, run unchanged."""
    calls = iter(per_call)
    device = next(decoder.parameters()).device

    def hook(module: Any, args: Any, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        extra = next(calls, None)
        if extra:
            kwargs = {**kwargs, **{k: v.to(device) for k, v in extra.items()}}
        return args, kwargs

    with _GUIDED:
        handle = decoder.register_forward_pre_hook(hook, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()
