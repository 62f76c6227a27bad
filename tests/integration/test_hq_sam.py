"""HQ-SAM and Light HQ-SAM (``--model sam_hq_vit_b|l|h|tiny``) from segment-anything-hq.

Random weights saved in the official checkpoint format (a plain state dict of the package's own
model) load strictly; the features and masks equal those of the package's own predictor; every
official size is recognised from its state dict; bad checkpoints are one line (on the command
line: test_mobile_sam.py, for both kinds of model); downloads are
pinned by published digests; the command line tracks, personalizes, segments and finds with it,
and a target of another model is refused in one line. PerSAM's decoding on HQ-SAM against the
official loop is in ``test_exactness.py``."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from persam_video.cli import cli
from persam_video.model import checkpoints as W
from persam_video.model.hq import HQ_MODELS, build_hq_sam
from persam_video.model.registry import describe_state_dict, load_sam, model_names
from persam_video.model.spec import build_sam_from_spec, tiny_sam_spec
from persam_video.persam.cascade import decode
from persam_video.persam.encoder import FrameEncoder
from persam_video.persam.geometry import upsample_logits
from tests.e2e.test_track_cli import make_input
from tests.helpers import personalize_segment_find, random_image, tiny_hq_sam
from tests.video_factory import synthetic_labels

pytest.importorskip("segment_anything_hq", reason="segment-anything-hq (the hq extra)")

TINY = "sam_hq_vit_tiny"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """Random Light HQ-SAM weights in the official checkpoint's format."""
    path = tmp_path_factory.mktemp("hq") / "sam_hq_vit_tiny.pth"
    torch.save(build_hq_sam(TINY, seed=0).state_dict(), path)
    return path


def test_every_hq_model_is_known_and_recognised_from_its_state_dict():
    assert set(HQ_MODELS) <= set(model_names())
    for name in HQ_MODELS:
        if name == TINY:  # TinyViT's constructor reads tensor values: not on the meta device
            assert describe_state_dict(build_hq_sam(name).state_dict()) == name
            continue
        with torch.device("meta"):  # the official ViT architectures, no memory
            assert describe_state_dict(build_hq_sam(name).state_dict()) == name
    sam_state = build_sam_from_spec(tiny_sam_spec()).state_dict()
    assert describe_state_dict(sam_state).startswith("a SAM with encoder width")


@pytest.mark.slow  # the encoder runs at 1024 px
def test_loaded_model_equals_the_official_predictor(checkpoint):
    from segment_anything_hq import SamPredictor, sam_model_registry

    ours = load_sam(TINY, checkpoint=checkpoint, device="cpu")
    official = sam_model_registry["vit_tiny"](checkpoint=None).eval()
    official.load_state_dict(torch.load(checkpoint, weights_only=True), strict=True)
    rgb = random_image(np.random.default_rng(0), 120, 160)
    predictor = SamPredictor(official)
    points, labels = np.array([[80.0, 60.0], [10.0, 100.0]]), np.array([1, 0])
    with torch.inference_mode():
        predictor.set_image(rgb)
        masks, scores, _ = predictor.predict(points, labels, multimask_output=False)
        feats = FrameEncoder(ours).encode(rgb)
        low, iou = decode(ours, feats, torch.as_tensor(points)[None], torch.as_tensor(labels)[None])
        mask = upsample_logits(ours, feats, low[:, :1])[0, 0] > ours.mask_threshold
    theirs = predictor.features.flatten()
    cosine = torch.nn.functional.cosine_similarity(feats.embedding.flatten(), theirs, dim=0)
    assert float(cosine) >= 0.9999
    union = np.logical_or(mask.numpy(), masks[0]).sum()
    overlap = np.logical_and(mask.numpy(), masks[0]).sum() / max(union, 1)
    assert overlap >= 0.99 and abs(float(iou[0, 0]) - float(scores[0])) < 1e-5


def test_bad_checkpoints_are_one_line(tmp_path):
    vit = tmp_path / "vit.pt"
    torch.save(build_sam_from_spec(tiny_sam_spec()).state_dict(), vit)
    with pytest.raises(W.WeightsError, match="not a sam_hq_vit_b SAM checkpoint"):
        load_sam("sam_hq_vit_b", checkpoint=vit, device="cpu")


def test_downloads_are_pinned_by_published_digests(tmp_path):
    sample = tmp_path / "sample.bin"
    sample.write_bytes(b"hello\n")
    assert W.md5_of(sample) == "b1946ac92492d2347c6235b4d2611184"  # md5sum's
    for name in HQ_MODELS:
        entry = W.CHECKPOINTS[name]
        assert entry.url.startswith("https://huggingface.co/lkeab/hq-sam/resolve/")
        assert entry.sha256 or entry.md5
        with pytest.raises(W.WeightsError, match="SHA-256|MD5"):
            W.verify_file(sample, entry)
    pinned = W.Checkpoint("x", "file:///x", None, None, md5=W.md5_of(sample))
    assert W.is_official(sample, pinned)
    with pytest.raises(ValueError, match="pins no digest"):
        W.Checkpoint("x", "file:///x", None, None)


@pytest.mark.slow  # the encoder runs at 1024 px
def test_track_personalize_segment_and_find_with_light_hq_sam(tmp_path, checkpoint):

    video, _, _ = make_input(tmp_path, n_frames=3)
    ys, xs = (synthetic_labels(0, (72, 96)) == 1).nonzero()
    model = ["--model", TINY, "--checkpoint", str(checkpoint), "-q"]
    out = tmp_path / "out"
    click = f"{int(xs.mean())},{int(ys.mean())}"
    result = CliRunner().invoke(
        cli, ["track", str(video), "--point", click, "--out", str(out), *model]
    )
    assert result.exit_code == 0, result.output
    document = json.loads((out / "results.json").read_text())
    assert document["run"]["model"] == TINY and len(document["frames"]) == 3

    target = personalize_segment_find(tmp_path, video, model, TINY)

    other = ["--model", "demo", "-q"]
    refused = CliRunner().invoke(
        cli, ["track", str(video), "--target", str(target), "--out", str(tmp_path / "b"), *other]
    )
    assert refused.exit_code == 2 and f"made with model {TINY}, not demo" in refused.output
    assert len(refused.output.strip().splitlines()) == 1 and not (tmp_path / "b").exists()


def test_a_missing_extra_is_one_line_before_any_download(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "segment_anything_hq", None)  # as if not installed
    monkeypatch.setenv("PERSAM_VIDEO_CACHE", str(tmp_path / "cache"))
    video, mask, _ = make_input(tmp_path, n_frames=2)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["track", str(video), "--mask", str(mask), "--out", str(out), "--model", TINY, "-q"]
    )
    assert result.exit_code == 2, result.output
    assert "pip install 'persam-video[hq]'" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_fast_attention_and_int8_run_on_hq_sams_vit():
    """HQ-SAM's ViT is SAM's: the faster attention gives the same features and early-layer
    features (within float rounding), and the int8 view runs on it."""
    sam = tiny_hq_sam()
    rgb = random_image(np.random.default_rng(0), 90, 150)
    stock = FrameEncoder(sam, attention="stock").encode(rgb)
    fast_encoder = FrameEncoder(sam)
    assert fast_encoder.settings()["attention"] == "fast"
    fast = fast_encoder.encode(rgb)
    assert stock.hq is not None and fast.hq is not None
    assert torch.allclose(fast.embedding, stock.embedding, atol=1e-4)
    assert torch.allclose(fast.hq, stock.hq, atol=1e-4)
    int8 = FrameEncoder(sam, precision="int8").encode(rgb)
    assert int8.hq is not None and int8.embedding.shape == stock.embedding.shape
