"""A faster SAM image encoder attention with the same weights and the same results.

SAM's ViT attention adds decomposed relative-position terms to the full attention matrix,
``attn[q, (kh, kw)] = scale * q.k + rel_h[q, kh] + rel_w[q, kw]``, then runs a separate softmax:
on a CPU most of the encoder's time goes into those elementwise passes over an (N x N) matrix.
Here the terms are folded into one matrix product by augmenting queries and keys:

    q' = [scale * q, rel_h[q, :], rel_w[q, :]]        k' = [k, onehot(kh), onehot(kw)]

so ``q' . k'`` is exactly the biased logit, and the whole attention is one call of
``torch.nn.functional.scaled_dot_product_attention`` (fused softmax, no materialized bias),
which picks the best kernel of the device (flash / memory-efficient on CUDA).

:func:`set_fast_attention` swaps each encoder block's ``Attention`` for :class:`FastAttention`
sharing the very same parameters (the state dict is unchanged; the stock ``SamPredictor`` keeps
working and gets the same features up to float rounding), and swaps it back when disabled.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from segment_anything.modeling.image_encoder import Attention, get_rel_pos
from torch import Tensor


class FastAttention(Attention):
    """SAM's encoder ``Attention`` computed with SDPA and relative positions folded into q/k."""

    @classmethod
    def from_stock(cls, attn: Attention) -> FastAttention:
        """A :class:`FastAttention` using ``attn``'s parameters (shared, not copied)."""
        fast = cls.__new__(cls)
        torch.nn.Module.__init__(fast)
        fast.num_heads, fast.scale, fast.use_rel_pos = attn.num_heads, attn.scale, attn.use_rel_pos
        fast.qkv, fast.proj = attn.qkv, attn.proj
        if attn.use_rel_pos:
            fast.rel_pos_h, fast.rel_pos_w = attn.rel_pos_h, attn.rel_pos_w
        return fast

    def to_stock(self) -> Attention:
        """A stock ``Attention`` using these parameters."""
        stock = Attention.__new__(Attention)
        torch.nn.Module.__init__(stock)
        stock.num_heads, stock.scale, stock.use_rel_pos = (
            self.num_heads,
            self.scale,
            self.use_rel_pos,
        )
        stock.qkv, stock.proj = self.qkv, self.proj
        if self.use_rel_pos:
            stock.rel_pos_h, stock.rel_pos_w = self.rel_pos_h, self.rel_pos_w
        return stock

    def forward(self, x: Tensor) -> Tensor:
        """(B, H, W, C) tokens -> (B, H, W, C), as the stock ``Attention.forward``."""
        b, h, w, _ = x.shape
        n = h * w
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, heads, N, d)
        if self.use_rel_pos:
            q, k = self._fold_relative_positions(q, k, h, w)
            out = F.scaled_dot_product_attention(q, k, v, scale=1.0)
        else:
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        out = out.permute(0, 2, 1, 3).reshape(b, h, w, -1)
        return self.proj(out)

    def _fold_relative_positions(
        self, q: Tensor, k: Tensor, h: int, w: int
    ) -> tuple[Tensor, Tensor]:
        """Augmented (B, heads, N, d + h + w) queries and keys whose dot product is the logit."""
        b, heads, n, d = q.shape
        rel_h = get_rel_pos(h, h, self.rel_pos_h).to(q.dtype)  # (h, h, d)
        rel_w = get_rel_pos(w, w, self.rel_pos_w).to(q.dtype)  # (w, w, d)
        grid = q.reshape(b, heads, h, w, d)
        terms_h = torch.einsum("bnhwc,hkc->bnhwk", grid, rel_h).reshape(b, heads, n, h)
        terms_w = torch.einsum("bnhwc,wkc->bnhwk", grid, rel_w).reshape(b, heads, n, w)
        rows = torch.arange(n, device=q.device) // w
        cols = torch.arange(n, device=q.device) % w
        onehot_h = F.one_hot(rows, h).to(q.dtype).expand(b, heads, n, h)
        onehot_w = F.one_hot(cols, w).to(q.dtype).expand(b, heads, n, w)
        q_aug = torch.cat([q * self.scale, terms_h, terms_w], dim=-1)
        k_aug = torch.cat([k, onehot_h, onehot_w], dim=-1)
        return q_aug, k_aug


def set_fast_attention(sam: Sam, enabled: bool = True) -> Sam:
    """Use :class:`FastAttention` in every block of ``sam``'s image encoder (or the stock one).

    The parameters are shared, so the state dict and the weights are unchanged. Returns ``sam``.
    """
    for block in sam.image_encoder.blocks:
        if enabled and not isinstance(block.attn, FastAttention):
            block.attn = FastAttention.from_stock(block.attn)
        elif not enabled and isinstance(block.attn, FastAttention):
            block.attn = block.attn.to_stock()
    return sam


def uses_fast_attention(sam: Sam) -> bool:
    """Whether ``sam``'s encoder runs :class:`FastAttention`."""
    return all(isinstance(block.attn, FastAttention) for block in sam.image_encoder.blocks)
