"""Frame encoding options: batching frames and reduced precision keep the results."""

from __future__ import annotations

import shutil

import pytest
import torch

from persam_video.config import PerSAMConfig
from persam_video.persam.encoder import FrameEncoder
from persam_video.video.tracker import VideoTracker
from tests.helpers import encode_image
from tests.video_factory import synthetic_frame, synthetic_labels

SIZE = (60, 84)


def frames(n: int):
    return [synthetic_frame(i, SIZE) for i in range(n)]


def test_batched_encoding_equals_single_frames(small_sam):
    clip = frames(5)
    batched = FrameEncoder(small_sam, batch_size=3).encode_many(clip[:3])
    for frame, feats in zip(clip[:3], batched, strict=True):
        single = encode_image(small_sam, frame)
        assert torch.allclose(feats.embedding, single.embedding, atol=1e-5)
        assert (feats.input_size, feats.original_size) == (single.input_size, single.original_size)


def test_tracker_with_batched_encoder_gives_the_same_masks(small_sam):
    clip, first = frames(7), synthetic_labels(0, SIZE)
    plain = [r.labels for r in VideoTracker(small_sam, PerSAMConfig()).track(clip, first)]
    encoder = FrameEncoder(small_sam, batch_size=3)
    batched = [
        r.labels for r in VideoTracker(small_sam, PerSAMConfig(), encoder).track(clip, first)
    ]
    assert len(batched) == len(plain) == 7
    for a, b in zip(plain, batched, strict=True):
        assert (a != b).mean() < 1e-3


def test_bfloat16_encoder_keeps_the_masks(small_sam):
    """Masks under bf16 autocast stay within IoU 0.99 of float32 (random weights as a proxy)."""
    clip, first = frames(6), synthetic_labels(0, SIZE)
    full = list(VideoTracker(small_sam, PerSAMConfig()).track(clip, first))
    half_encoder = FrameEncoder(small_sam, precision="bfloat16")
    assert half_encoder.precision == "bfloat16"
    half = list(VideoTracker(small_sam, PerSAMConfig(), half_encoder).track(clip, first))
    for a, b in zip(full, half, strict=True):
        for obj in (1, 2):
            ma, mb = a.labels == obj, b.labels == obj
            union = (ma | mb).sum()
            iou = 1.0 if union == 0 else (ma & mb).sum() / union
            assert iou >= 0.99, (a.index, obj, iou)


NO_COMPILER = shutil.which("g++") is None


@pytest.mark.slow
@pytest.mark.skipif(NO_COMPILER, reason="torch.compile on CPUs needs a C++ compiler")
def test_compiled_encoder_gives_the_same_features(tiny_sam):
    """``compile=True`` (``--compile``) runs the encoder through torch.compile, same features."""
    clip = frames(2)
    plain = FrameEncoder(tiny_sam)
    compiled = FrameEncoder(tiny_sam, compile=True)
    assert compiled._encoder is not tiny_sam.image_encoder
    for frame in clip:
        expected, got = plain.encode(frame).embedding, compiled.encode(frame).embedding
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_encoder_options_are_checked(tiny_sam):
    with pytest.raises(ValueError, match="batch_size"):
        FrameEncoder(tiny_sam, batch_size=0)
    with pytest.raises(ValueError, match="unknown precision"):
        FrameEncoder(tiny_sam, precision="int4")
    assert FrameEncoder(tiny_sam, precision="auto").precision == "float32"  # on a CPU
    assert torch.isfinite(FrameEncoder(tiny_sam).encode(frames(1)[0]).embedding).all()
