"""SAM's mask decoder with PerSAM's target-guided attention and target-semantic prompting.

Nothing of segment-anything is copied or modified: the stock ``MaskDecoder.predict_masks``,
``TwoWayTransformer.forward`` and ``TwoWayAttentionBlock.forward`` run unchanged, each on a thin
stand-in of its module (:class:`_With`) in which a few children are replaced for this one call:

- target-guided attention replaces the token-to-image cross-attention of every two-way block
  (not the final token-to-image attention) by ``softmax(softmax(QK^T / sqrt(d)) + A) V``;
- target-semantic prompting adds the target embedding ``t`` to the queries before every block and
  uses ``P + t`` as the query positional embedding, and ``queries + (P + t) + t`` as the final
  attention's query. This is what the official PerSAM code computes (its in-place ``queries += t``
  also changes the tensor that serves as positional embedding), and what produced its numbers.

The model itself is never touched, so the stock ``SamPredictor`` keeps working on it and several
threads may decode at once.

HQ-SAM's ``MaskDecoderHQ`` has the same two-way transformer, so the same stand-ins guide it; its
high-quality mask (from its extra output token and the fused early-layer encoder features) is
added to each of SAM's mask outputs, as its official predictor does (``hq_token_only=False``)
for whichever output it returns, so every PerSAM step that picks an output gets the HQ mask.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
from segment_anything.modeling import MaskDecoder
from segment_anything.modeling.transformer import Attention, TwoWayAttentionBlock
from torch import Tensor

from persam_video.model.hq import is_hq_decoder


class _With:
    """Presents ``module`` to one of its own methods with some attributes replaced."""

    def __init__(self, module: torch.nn.Module, **replaced: Any) -> None:
        self._module = module
        self.__dict__.update(replaced)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


def guided_attention(attn: Attention, q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
    """SAM's ``Attention`` with PerSAM's guidance: ``softmax(softmax(QK^T / sqrt(d)) + bias) V``.

    Args:
        attn: the token-to-image ``Attention`` module whose projections are used.
        q: (B, N_tokens, C) queries; k, v: (B, N_image, C) keys and values.
        bias: (B, 1, 1, N_image) attention bias, broadcast over heads and tokens.

    Returns:
        (B, N_tokens, C) attention output.
    """
    q = attn._separate_heads(attn.q_proj(q), attn.num_heads)
    k = attn._separate_heads(attn.k_proj(k), attn.num_heads)
    v = attn._separate_heads(attn.v_proj(v), attn.num_heads)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    weights = torch.softmax(torch.softmax(scores, dim=-1) + bias, dim=-1)
    return attn.out_proj(attn._recombine_heads(weights @ v))


def predict_masks(
    decoder: MaskDecoder,
    image_embeddings: Tensor,
    image_pe: Tensor,
    sparse_prompt_embeddings: Tensor,
    dense_prompt_embeddings: Tensor,
    *,
    attn_bias: Tensor | None = None,
    target_embedding: Tensor | None = None,
    hq_features: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """All mask outputs of SAM's decoder for a batch of prompts on one image, optionally guided.

    Args:
        decoder: the model's ``MaskDecoder``.
        image_embeddings: (1, C, h, w) image embedding.
        image_pe: (1, C, h, w) dense positional encoding (``prompt_encoder.get_dense_pe()``).
        sparse_prompt_embeddings: (B, N, C) point and box embeddings.
        dense_prompt_embeddings: (B, C, h, w) mask-prompt embeddings.
        attn_bias: (B, h * w) target-guided attention map A (added to the attention weights),
            or None for SAM's own attention.
        target_embedding: (B, C) target embeddings for semantic prompting, or None.
        hq_features: HQ-SAM only (and required there): (1, C / 8, 4h, 4w) its fused
            high-resolution features (:func:`hq_features`, kept as
            :attr:`~persam_video.persam.features.FrameFeatures.hq`).

    Returns:
        masks: (B, 1 + M, 4h, 4w) low-resolution mask logits: index 0 is the single-mask output,
        1..M the multimask outputs (as ``MaskDecoder.predict_masks``); with HQ-SAM each has the
        high-quality mask added.
        iou_pred: (B, 1 + M) predicted mask quality.
    """
    hq = is_hq_decoder(decoder)
    extra = {}
    if hq:
        if hq_features is None:
            raise ValueError("HQ-SAM's decoder needs its high-resolution features")
        extra["hq_features"] = hq_features
    module: Any = decoder
    if attn_bias is not None or target_embedding is not None:
        transformer = decoder.transformer
        bias = None if attn_bias is None else attn_bias[:, None, None, :]
        shift = None if target_embedding is None else target_embedding[:, None, :]
        layers = [partial(_guided_block, block, bias, shift) for block in transformer.layers]
        final_attn = transformer.final_attn_token_to_image
        if shift is not None:
            # Stock: q = queries + P. Official PerSAM: q = queries + (P + t) + t.
            final_attn = partial(_shifted_query, final_attn, 2 * shift)
        stand_in = _With(transformer, layers=layers, final_attn_token_to_image=final_attn)
        module = _With(decoder, transformer=partial(type(transformer).forward, stand_in))
    masks, iou_pred = type(decoder).predict_masks(
        module,
        image_embeddings=image_embeddings,
        image_pe=image_pe,
        sparse_prompt_embeddings=sparse_prompt_embeddings,
        dense_prompt_embeddings=dense_prompt_embeddings,
        **extra,
    )
    if hq:  # the last output is the high-quality mask
        masks = masks[:, :-1] + masks[:, -1:]
    return masks, iou_pred


def hq_features(decoder: Any, image_embeddings: Tensor, interm: Tensor) -> Tensor:
    """HQ-SAM's fused high-resolution features, as ``MaskDecoderHQ.forward`` computes them.

    Args:
        decoder: HQ-SAM's ``MaskDecoderHQ``.
        image_embeddings: (B, C, h, w) image embeddings; interm: (B, h, w, C_enc) early-layer
            encoder features (channels last, as HQ-SAM's encoders return them).

    Returns:
        (B, C / 8, 4h, 4w) features the high-quality token's mask is read from.
    """
    early = interm.permute(0, 3, 1, 2)
    return decoder.embedding_encoder(image_embeddings) + decoder.compress_vit_feat(early)


def _guided_block(
    block: TwoWayAttentionBlock,
    bias: Tensor | None,
    shift: Tensor | None,
    *,
    queries: Tensor,
    keys: Tensor,
    query_pe: Tensor,
    key_pe: Tensor,
) -> tuple[Tensor, Tensor]:
    if shift is not None:
        queries = queries + shift
        query_pe = query_pe + shift
    kind = type(block)  # segment-anything's TwoWayAttentionBlock, or segment-anything-hq's
    if bias is not None:
        cross = partial(guided_attention, block.cross_attn_token_to_image, bias=bias)
        block = _With(block, cross_attn_token_to_image=cross)
    return kind.forward(block, queries=queries, keys=keys, query_pe=query_pe, key_pe=key_pe)


def _shifted_query(attn: Attention, shift: Tensor, *, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    return attn(q=q + shift, k=k, v=v)
