"""The SDPA encoder attention equals the stock one, on the same weights."""

from __future__ import annotations

import pytest
import torch
from segment_anything.modeling.image_encoder import Attention

from persam_video.fast_encoder import FastAttention, set_fast_attention, uses_fast_attention
from persam_video.models import SamSpec, build_sam

REL_TOL = 1e-4

SPECS = {
    # vit_b's head size (64) and windows of 14, at smaller inputs
    "vitb_heads_224": SamSpec(image_size=224, encoder_dim=128, encoder_depth=2, encoder_heads=2,
                              encoder_global_attn=(1,), window_size=14, decoder_dim=32,
                              decoder_mlp_dim=64, iou_head_hidden_dim=32),
    "windows_not_dividing_320": SamSpec(image_size=320, encoder_dim=96, encoder_depth=3,
                                        encoder_heads=3, encoder_global_attn=(2,), window_size=7,
                                        decoder_dim=32, decoder_mlp_dim=64,
                                        iou_head_hidden_dim=32),
    "demo_like_256": SamSpec(image_size=256, encoder_dim=96, encoder_depth=4, encoder_heads=4,
                             encoder_global_attn=(1, 3), window_size=8, decoder_dim=128,
                             decoder_mlp_dim=512, iou_head_hidden_dim=128),
}  # fmt: skip


def randomized(spec: SamSpec, seed: int):
    """A model whose relative-position tables are random too (SAM initializes them to zero)."""
    sam = build_sam(spec, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in sam.image_encoder.blocks:
            for table in (block.attn.rel_pos_h, block.attn.rel_pos_w):
                table.copy_(torch.randn(table.shape, generator=generator) * 0.5)
    return sam


@pytest.mark.parametrize("mode", ["bias", "folded"])
@pytest.mark.parametrize("name", list(SPECS))
def test_fast_encoder_matches_stock(name, mode, monkeypatch):
    spec = SPECS[name]
    sam = randomized(spec, seed=3)
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, spec.image_size, spec.image_size, generator=generator)
    if mode == "bias":  # also exercise the chunked bias: at most 3 query rows at a time
        grid = spec.image_size // spec.patch_size
        limit = 2 * spec.encoder_heads * grid**3 * 4 * 3
        monkeypatch.setattr("persam_video.fast_encoder.BIAS_CHUNK_BYTES", limit)
    with torch.no_grad():
        stock = sam.image_encoder(images * 60)
        set_fast_attention(sam, mode=mode)
        assert uses_fast_attention(sam)
        fast = sam.image_encoder(images * 60)
    relative = (fast - stock).norm() / stock.norm()
    assert relative < REL_TOL, float(relative)
    assert (fast - stock).abs().max() < REL_TOL * stock.abs().max() * 10


def test_switching_keeps_the_weights_and_can_be_undone():
    sam = randomized(SPECS["demo_like_256"], seed=4)
    before = {k: v.clone() for k, v in sam.state_dict().items()}
    set_fast_attention(sam)
    assert all(isinstance(b.attn, FastAttention) for b in sam.image_encoder.blocks)
    after = sam.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # The parameters are shared, not copied.
    block = sam.image_encoder.blocks[0]
    assert (
        block.attn.qkv.weight.data_ptr()
        == after["image_encoder.blocks.0.attn.qkv.weight"].data_ptr()
    )
    set_fast_attention(sam, enabled=False)
    assert all(type(b.attn) is Attention for b in sam.image_encoder.blocks)
    assert not uses_fast_attention(sam)
    sam.load_state_dict(before)  # still loadable either way
