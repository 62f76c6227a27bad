"""The SDPA encoder attention equals the stock one, on the same weights, without touching the
model."""

from __future__ import annotations

import pytest
import torch
from segment_anything.modeling.image_encoder import Attention

from persam_video.model.attention import FastAttention, fast_image_encoder, uses_fast_attention
from persam_video.model.spec import SamSpec, build_sam_from_spec
from persam_video.persam.encoder import FrameEncoder

REL_TOL = 1e-4

SPECS = {
    # vit_b's head size (64) and windows of 14, at smaller inputs
    "vitb_heads_224": SamSpec(
        image_size=224,
        encoder_dim=128,
        encoder_depth=2,
        encoder_heads=2,
        encoder_global_attn=(1,),
        window_size=14,
        decoder_dim=32,
        decoder_mlp_dim=64,
        iou_head_hidden_dim=32,
    ),
    "windows_not_dividing_320": SamSpec(
        image_size=320,
        encoder_dim=96,
        encoder_depth=3,
        encoder_heads=3,
        encoder_global_attn=(2,),
        window_size=7,
        decoder_dim=32,
        decoder_mlp_dim=64,
        iou_head_hidden_dim=32,
    ),
    "demo_like_256": SamSpec(
        image_size=256,
        encoder_dim=96,
        encoder_depth=4,
        encoder_heads=4,
        encoder_global_attn=(1, 3),
        window_size=8,
        decoder_dim=128,
        decoder_mlp_dim=512,
        iou_head_hidden_dim=128,
    ),
}


def randomized(spec: SamSpec, seed: int):
    """A model whose relative-position tables are random too (SAM initializes them to zero)."""
    sam = build_sam_from_spec(spec, seed=seed)
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
        monkeypatch.setattr("persam_video.model.attention.BIAS_CHUNK_BYTES", limit)
    with torch.no_grad():
        stock = sam.image_encoder(images * 60)
        view = fast_image_encoder(sam.image_encoder, mode=mode)
        assert uses_fast_attention(view) and not uses_fast_attention(sam.image_encoder)
        fast = view(images * 60)
    relative = (fast - stock).norm() / stock.norm()
    assert relative < REL_TOL, float(relative)
    assert (fast - stock).abs().max() < REL_TOL * stock.abs().max() * 10


def test_the_fast_view_shares_the_weights_and_leaves_the_model_stock():
    sam = randomized(SPECS["demo_like_256"], seed=4)
    before = {k: v.clone() for k, v in sam.state_dict().items()}
    stock_modules = [type(m) for m in sam.modules()]
    view = fast_image_encoder(sam.image_encoder)
    assert all(isinstance(b.attn, FastAttention) for b in view.blocks)
    # The model is exactly as it was: same module types, same state dict.
    assert [type(m) for m in sam.modules()] == stock_modules
    assert all(type(b.attn) is Attention for b in sam.image_encoder.blocks)
    after = sam.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # The parameters are shared, not copied: the view follows changes of the model's weights.
    shared = view.blocks[0].attn.qkv.weight
    assert shared is sam.image_encoder.blocks[0].attn.qkv.weight
    assert view.patch_embed.proj.weight is sam.image_encoder.patch_embed.proj.weight
    image = torch.randn(1, 3, 256, 256) * 60
    with torch.no_grad():
        sam.image_encoder.neck[0].weight.mul_(2.0)
        assert torch.allclose(view(image), sam.image_encoder(image), rtol=1e-4, atol=1e-4)


def test_frame_encoder_chooses_the_attention():
    sam = randomized(SPECS["demo_like_256"], seed=5)
    fast, stock = FrameEncoder(sam), FrameEncoder(sam, attention="stock")
    assert fast.attention == "fast" and uses_fast_attention(fast.image_encoder)
    assert stock.image_encoder is sam.image_encoder
    assert not uses_fast_attention(sam.image_encoder)
    with pytest.raises(ValueError, match="attention"):
        FrameEncoder(sam, attention="flash")
