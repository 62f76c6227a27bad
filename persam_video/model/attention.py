"""A faster SAM image-encoder attention with the same weights and the same results.

SAM's ViT attention adds decomposed relative-position terms to the attention logits,
``logit[q, (kh, kw)] = scale * q.k + rel_h[q, kh] + rel_w[q, kw]``, through broadcast adds over
5-D views of the full (N x N) matrix, then runs a separate softmax: on a CPU, more than half of
the encoder's time. Here the attention is one call of
``torch.nn.functional.scaled_dot_product_attention`` (fused softmax; the best kernel of the
device), in one of two exact ways:

- ``bias``: the relative-position terms are summed once into an additive attention bias
  (one contiguous broadcast add), which SDPA's fused CPU kernel adds blockwise. Fastest on CPUs;
  the bias is materialized (heads x N x N floats, in query chunks of bounded size).
- ``folded``: the terms are folded into one matrix product by augmenting queries and keys,
  ``q' = [scale * q, rel_h[q, :], rel_w[q, :]]`` and ``k' = [k, onehot(kh), onehot(kw)]``, so
  ``q' . k'`` is exactly the biased logit; nothing of size N x N is materialized, which suits
  GPUs (flash and memory-efficient kernels), at the cost of a wider head (d + h + w).

:func:`fast_image_encoder` builds a view of the image encoder whose blocks use
:class:`FastAttention` with the very same parameter objects; the model itself is never modified
(the stock ``SamPredictor`` keeps running the stock attention on it, and both get the same
features up to float rounding).
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Attention, ImageEncoderViT, get_rel_pos
from torch import Tensor

Mode = Literal["auto", "bias", "folded"]
#: Size of the attention-bias chunk materialized at once in ``bias`` mode (queries go by chunks of
#: whole rows); small enough to stay in cache and be recycled by the allocator.
BIAS_CHUNK_BYTES = 1 << 26


class FastAttention(Attention):
    """SAM's encoder ``Attention`` computed with SDPA (see the module docstring)."""

    mode: Mode = "auto"

    @classmethod
    def from_stock(cls, attn: Attention, mode: Mode = "auto") -> FastAttention:
        """A :class:`FastAttention` using ``attn``'s parameters (shared, not copied)."""
        fast = cls.__new__(cls)
        torch.nn.Module.__init__(fast)
        _share(attn, fast)
        fast.mode = mode
        return fast

    def forward(self, x: Tensor) -> Tensor:
        """(B, H, W, C) tokens -> (B, H, W, C), as the stock ``Attention.forward``."""
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, heads, N, d)
        if not self.use_rel_pos:
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        elif self._mode(x) == "folded":
            out = self._folded(q, k, v, h, w)
        else:
            out = self._biased(q, k, v, h, w)
        return self.proj(out.permute(0, 2, 1, 3).reshape(b, h, w, -1))

    def _mode(self, x: Tensor) -> str:
        if self.mode != "auto":
            return self.mode
        return "bias" if x.device.type == "cpu" else "folded"

    def _relative_terms(self, q: Tensor, h: int, w: int) -> tuple[Tensor, Tensor]:
        """(B, heads, h, w, h) and (B, heads, h, w, w): rel_h[q, kh] and rel_w[q, kw]."""
        b, heads, _, d = q.shape
        grid = q.reshape(b, heads, h, w, d)
        table_h = get_rel_pos(h, h, self.rel_pos_h).to(q.dtype)  # (h, h, d)
        table_w = get_rel_pos(w, w, self.rel_pos_w).to(q.dtype)  # (w, w, d)
        return (
            torch.einsum("bnhwc,hkc->bnhwk", grid, table_h).contiguous(),
            torch.einsum("bnhwc,wkc->bnhwk", grid, table_w).contiguous(),
        )

    def _biased(self, q: Tensor, k: Tensor, v: Tensor, h: int, w: int) -> Tensor:
        terms_h, terms_w = self._relative_terms(q, h, w)
        b, heads, n, _ = q.shape
        rows_per_chunk = max(1, BIAS_CHUNK_BYTES // (b * heads * w * n * q.element_size()))
        rows_per_chunk = min(rows_per_chunk, h)
        track_grad = torch.is_grad_enabled() and (terms_h.requires_grad or terms_w.requires_grad)
        # One chunk buffer, reused: the bias is written and read while still in cache, and a
        # buffer of this size is recycled by the allocator rather than page-faulted anew.
        buffer = None if track_grad else q.new_empty((b, heads, rows_per_chunk, w, h, w))
        outputs = []
        for start in range(0, h, rows_per_chunk):
            stop = min(start + rows_per_chunk, h)
            part_h = terms_h[:, :, start:stop, :, :, None]
            part_w = terms_w[:, :, start:stop, :, None, :]
            if buffer is None:  # autograd: a fresh tensor per chunk
                bias = (part_h + part_w).contiguous()
            else:  # one broadcast add straight into the contiguous buffer
                bias = buffer[:, :, : stop - start]
                torch.add(part_h, part_w, out=bias)
            queries = q[:, :, start * w : stop * w]
            bias = bias.view(b, heads, queries.shape[2], n)
            outputs.append(
                F.scaled_dot_product_attention(queries, k, v, attn_mask=bias, scale=self.scale)
            )
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)

    def _folded(self, q: Tensor, k: Tensor, v: Tensor, h: int, w: int) -> Tensor:
        terms_h, terms_w = self._relative_terms(q, h, w)
        b, heads, n, d = q.shape
        rows = torch.arange(n, device=q.device) // w
        cols = torch.arange(n, device=q.device) % w
        onehot_h = F.one_hot(rows, h).to(q.dtype).expand(b, heads, n, h)
        onehot_w = F.one_hot(cols, w).to(q.dtype).expand(b, heads, n, w)
        q_aug = torch.cat(
            [q * self.scale, terms_h.reshape(b, heads, n, h), terms_w.reshape(b, heads, n, w)],
            dim=-1,
        )
        k_aug = torch.cat([k, onehot_h, onehot_w], dim=-1)
        # Fused kernels need one head size for q, k and v: pad v with zeros, then cut.
        v_aug = F.pad(v, (0, q_aug.shape[-1] - d))
        return F.scaled_dot_product_attention(q_aug, k_aug, v_aug, scale=1.0)[..., :d]


def _share(source: Attention, target: Attention) -> None:
    """Make ``target`` use ``source``'s hyper-parameters and parameter objects."""
    target.num_heads, target.scale = source.num_heads, source.scale
    target.use_rel_pos = source.use_rel_pos
    target.qkv, target.proj = source.qkv, source.proj
    if source.use_rel_pos:
        target.rel_pos_h, target.rel_pos_w = source.rel_pos_h, source.rel_pos_w


def fast_image_encoder(encoder: ImageEncoderViT, mode: Mode = "auto") -> ImageEncoderViT:
    """A view of SAM's image ``encoder`` whose blocks use :class:`FastAttention`.

    ``mode``: ``auto`` (``bias`` on CPUs, ``folded`` on GPUs), ``bias`` or ``folded``. The view
    is a new module tree sharing every parameter and buffer of ``encoder`` (nothing is copied),
    so it follows the model's weights and device; ``encoder`` itself is not modified, and the
    stock ``SamPredictor`` keeps running segment-anything's own attention on it.
    """
    view = shallow_view(encoder)
    blocks = []
    for block in encoder.blocks:
        fast_block = shallow_view(block)
        fast_block.attn = FastAttention.from_stock(block.attn, mode)
        blocks.append(fast_block)
    view.blocks = torch.nn.ModuleList(blocks)
    return view


def uses_fast_attention(encoder: torch.nn.Module) -> bool:
    """Whether every block of an image ``encoder`` runs :class:`FastAttention`."""
    return all(isinstance(block.attn, FastAttention) for block in encoder.blocks)


def shallow_view(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``module`` with its own tables of children, parameters and buffers, holding
    the same objects: assigning a child of the copy leaves ``module`` as it was."""
    clone = copy.copy(module)
    clone._modules = dict(module._modules)
    clone._parameters = dict(module._parameters)
    clone._buffers = dict(module._buffers)
    return clone
