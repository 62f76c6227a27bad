"""``precision="int8"``: the encoder's linear layers in int8, attention in float32, the model
untouched, features and masks within bounds of float32."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from persam_video.config import PerSAMConfig
from persam_video.model.attention import FastAttention
from persam_video.model.quantize import (
    QUANTIZED_LINEARS,
    Int8Unavailable,
    int8_image_encoder,
    quantized_linears,
)
from persam_video.model.registry import load_sam
from persam_video.persam.encoder import FrameEncoder
from persam_video.synthetic import make_clip
from persam_video.video.tracker import VideoTracker
from tests.video_factory import synthetic_frame

#: The issue's bounds against float32.
MIN_FEATURE_COSINE = 0.99
MIN_MASK_IOU = 0.97
#: Demo clip used for the mask bound (test split, never seen in training).
CLIP_SEED, CLIP_FRAMES, CLIP_SIZE_HW = 3, 8, (120, 160)


@pytest.fixture(scope="module")
def demo_sam():
    return load_sam("demo", device="cpu")


def test_every_block_linear_is_int8_and_attention_stays_float(small_sam):
    encoder = FrameEncoder(small_sam, precision="int8")
    view = encoder.image_encoder
    depth = len(small_sam.image_encoder.blocks)
    expected = [f"blocks.{i}.{path}" for i in range(depth) for path in QUANTIZED_LINEARS]
    assert quantized_linears(view) == expected
    assert not [m for m in view.modules() if type(m) is torch.nn.Linear]
    for block, stock in zip(view.blocks, small_sam.image_encoder.blocks, strict=True):
        assert isinstance(block.attn, FastAttention)  # our float attention, not a quantized one
        assert block.attn.rel_pos_h is stock.attn.rel_pos_h  # shared float32 parameters
        assert block.attn.rel_pos_h.dtype == torch.float32
        assert block.norm1 is stock.norm1 and block.norm2 is stock.norm2
    assert view.patch_embed is small_sam.image_encoder.patch_embed
    assert view.neck is small_sam.image_encoder.neck
    assert quantized_linears(small_sam.image_encoder) == []
    stock_view = FrameEncoder(small_sam, attention="stock", precision="int8").image_encoder
    assert len(quantized_linears(stock_view)) == len(expected)
    assert not any(isinstance(b.attn, FastAttention) for b in stock_view.blocks)


def test_building_and_running_int8_leaves_the_model_unchanged(small_sam):
    modules = dict(small_sam.named_modules())
    params = dict(small_sam.named_parameters())
    values = {name: p.detach().clone() for name, p in small_sam.state_dict().items()}
    attrs = {name: dict(vars(m)) for name, m in modules.items()}
    encoder = FrameEncoder(small_sam, precision="int8")
    encoder.encode(synthetic_frame(0, (60, 84)))
    assert dict(small_sam.named_modules()) == modules  # the very same module objects
    assert all(a is b for a, b in zip(params.values(), small_sam.parameters(), strict=True))
    after = small_sam.state_dict()
    assert after.keys() == values.keys()
    for name, value in values.items():
        assert after[name].dtype == value.dtype and torch.equal(after[name], value), name
    for name, module in small_sam.named_modules():
        assert vars(module).keys() == attrs[name].keys(), name  # e.g. no qconfig left behind
        assert type(module) in (type(modules[name]),)
    assert not [m for m in small_sam.modules() if hasattr(m, "qconfig")]


def feature_cosines(sam, frames: list[np.ndarray]) -> torch.Tensor:
    """Cosine between float32 and int8 features per feature cell, (frames * cells,)."""
    full = torch.cat([e.embedding for e in FrameEncoder(sam).encode_many(frames)])
    int8 = torch.cat([e.embedding for e in FrameEncoder(sam, precision="int8").encode_many(frames)])
    assert full.shape == int8.shape and int8.dtype == torch.float32
    assert not torch.equal(full, int8)  # int8 did run: features differ by rounding
    return F.cosine_similarity(full, int8, dim=1).flatten()


@pytest.mark.parametrize("model", ["demo", "small_random"])
def test_int8_features_are_close_to_float32(model, demo_sam, small_sam):
    sam = demo_sam if model == "demo" else small_sam
    clip = make_clip(CLIP_SEED, n_frames=3, size_hw=CLIP_SIZE_HW)
    cosines = feature_cosines(sam, clip.frames)
    assert cosines.min() >= MIN_FEATURE_COSINE, float(cosines.min())


def mask_ious(a: np.ndarray, b: np.ndarray, ids) -> list[float]:
    ious = []
    for obj in ids:
        ma, mb = a == obj, b == obj
        union = (ma | mb).sum()
        ious.append(1.0 if union == 0 else float((ma & mb).sum() / union))
    return ious


def test_int8_masks_match_float32_on_the_demo_model(demo_sam):
    clip = make_clip(CLIP_SEED, n_frames=CLIP_FRAMES, size_hw=CLIP_SIZE_HW, n_objects=2)
    config = PerSAMConfig.default()
    full = list(VideoTracker(demo_sam, config).track(clip.frames, clip.labels[0]))
    int8_encoder = FrameEncoder(demo_sam, precision="int8")
    int8 = list(VideoTracker(demo_sam, config, int8_encoder).track(clip.frames, clip.labels[0]))
    assert len(full) == len(int8) == CLIP_FRAMES
    assert any((r.labels > 0).any() for r in full[1:])  # something was tracked
    for a, b in zip(full, int8, strict=True):
        ious = mask_ious(a.labels, b.labels, clip.object_ids)
        assert min(ious) >= MIN_MASK_IOU, (a.index, ious)


def test_int8_is_refused_off_the_cpu(tiny_sam):
    on_meta = copy.deepcopy(tiny_sam).to("meta")  # a device that is not a CPU, on any machine
    with pytest.raises(Int8Unavailable, match="CPUs only"):
        FrameEncoder(on_meta, precision="int8")
    with pytest.raises(ValueError, match="CPUs only"):
        int8_image_encoder(on_meta.image_encoder)


def test_auto_stays_float32_on_a_cpu_and_settings_say_what_runs(tiny_sam):
    assert FrameEncoder(tiny_sam, precision="auto").precision == "float32"
    assert FrameEncoder(tiny_sam, precision="int8").settings() == {
        "attention": "fast",
        "precision": "int8",
        "batch_frames": 1,
        "compile": False,
    }
