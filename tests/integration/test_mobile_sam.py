"""MobileSAM (``--model mobile_sam``): TinyViT from segment-anything-hq behind SAM's prompt side.

Random weights saved in MobileSAM's checkpoint format load strictly; the image features equal
those of segment-anything-hq's own TinyViT with the same weights, bit for bit; ``SamPredictor``
runs on the model; bad checkpoints are one line; the download is pinned by the official git blob
id; the command line tracks with it, and a target of another model is refused in one line."""

from __future__ import annotations

import json
import subprocess
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from persam_video.cli import cli
from persam_video.model import checkpoints as W
from persam_video.model.mobile import TINYVIT_SETTINGS, build_mobile_sam
from persam_video.model.registry import describe_state_dict, load_sam
from persam_video.model.spec import build_sam_from_spec, tiny_sam_spec
from persam_video.persam.encoder import FrameEncoder
from tests.e2e.test_track_cli import make_input
from tests.helpers import personalize_segment_find
from tests.video_factory import synthetic_labels

pytest.importorskip("segment_anything_hq", reason="segment-anything-hq (the hq extra)")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """Random MobileSAM weights in the official checkpoint's format (a plain state dict)."""
    path = tmp_path_factory.mktemp("mobile") / "mobile_sam.pt"
    torch.save(build_mobile_sam(seed=0).state_dict(), path)
    return path


@pytest.mark.slow  # the encoder runs at 1024 px
def test_loaded_features_equal_segment_anything_hq_tinyvit(checkpoint):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from segment_anything_hq.modeling import TinyViT
    sam = load_sam("mobile_sam", checkpoint=checkpoint, device="cpu")
    state = torch.load(checkpoint, weights_only=True)
    official = TinyViT(**TINYVIT_SETTINGS).eval()
    prefix = "image_encoder."
    official.load_state_dict(
        {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}, strict=True
    )
    images = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ours, theirs = sam.image_encoder(images), official(images)[0]
    assert ours.shape == (1, 256, 64, 64) and torch.equal(ours, theirs)
    assert describe_state_dict(state) == "mobile_sam"


@pytest.mark.slow  # the encoder runs at 1024 px
def test_sam_predictor_and_the_frame_encoder_run_on_it(checkpoint):
    from segment_anything import SamPredictor

    sam = load_sam("mobile_sam", checkpoint=checkpoint, device="cpu")
    rgb = (np.random.default_rng(0).random((120, 160, 3)) * 255).astype(np.uint8)
    predictor = SamPredictor(sam)
    predictor.set_image(rgb)
    masks, scores, _ = predictor.predict(np.array([[80, 60]]), np.array([1]))
    assert masks.shape == (3, 120, 160) and scores.shape == (3,)
    encoder = FrameEncoder(sam)
    assert encoder.settings()["attention"] == "stock"  # TinyViT has nothing to rewrite
    assert torch.equal(encoder.encode(rgb).embedding, predictor.features)
    with pytest.raises(ValueError, match="not one"):
        FrameEncoder(sam, precision="int8")


def test_bad_checkpoints_are_one_line(tmp_path):
    vit = tmp_path / "vit.pt"
    torch.save(build_sam_from_spec(tiny_sam_spec()).state_dict(), vit)
    with pytest.raises(W.WeightsError, match="not a mobile_sam SAM checkpoint"):
        load_sam("mobile_sam", checkpoint=vit, device="cpu")
    truncated = tmp_path / "cut.pt"
    truncated.write_bytes(vit.read_bytes()[:1000])
    with pytest.raises(W.WeightsError, match="not a loadable PyTorch checkpoint"):
        load_sam("mobile_sam", checkpoint=truncated, device="cpu")


def test_the_download_is_pinned_by_the_official_git_blob_id(tmp_path):
    entry = W.CHECKPOINTS["mobile_sam"]
    assert entry.git_blob == "7ef2d090979fd9853adf17b7a99c8b94a1c5a6a7"
    assert entry.filename == "mobile_sam.pt" and "34bbbfdface3c18e" in entry.url
    sample = tmp_path / "sample.bin"
    sample.write_bytes(b"hello\n")
    assert W.git_blob_of(sample) == "ce013625030ba8dba906f756967f9e9ca394464a"  # git's own
    git = subprocess.run(["git", "hash-object", str(sample)], capture_output=True, text=True)
    if git.returncode == 0:
        assert git.stdout.strip() == W.git_blob_of(sample)
    with pytest.raises(W.WeightsError, match="git blob id"):
        W.verify_file(sample, entry)


@pytest.mark.slow
def test_track_from_a_click_and_a_target_of_another_model_is_refused(tmp_path, checkpoint):
    video, _, _ = make_input(tmp_path, n_frames=3)
    ys, xs = (synthetic_labels(0, (72, 96)) == 1).nonzero()
    out = tmp_path / "out"
    args = ["--model", "mobile_sam", "--checkpoint", str(checkpoint), "--threads", "2", "-q"]
    click = f"{int(xs.mean())},{int(ys.mean())}"
    result = CliRunner().invoke(
        cli, ["track", str(video), "--point", click, "--out", str(out), *args]
    )
    assert result.exit_code == 0, result.output
    document = json.loads((out / "results.json").read_text())
    assert document["run"]["model"] == "mobile_sam" and len(document["frames"]) == 3
    assert document["run"]["encoder"]["attention"] == "stock"
    photo = tmp_path / "ref.png"
    target = tmp_path / "t.target"
    made = CliRunner().invoke(cli, ["frame", str(video), "0", "-o", str(photo)])
    assert made.exit_code == 0, made.output
    mask = tmp_path / "ref_mask.png"
    from persam_video.io import write_label_png

    write_label_png(mask, synthetic_labels(0, (72, 96)))
    personal = CliRunner().invoke(
        cli,
        [
            "personalize",
            str(photo),
            "--mask",
            str(mask),
            "--object",
            "1",
            "-o",
            str(target),
            "--model",
            "demo",
        ],
    )
    assert personal.exit_code == 0, personal.output
    refused = CliRunner().invoke(
        cli, ["track", str(video), "--target", str(target), "--out", str(tmp_path / "b"), *args]
    )
    assert refused.exit_code == 2 and "made with model demo, not mobile_sam" in refused.output
    assert len(refused.output.strip().splitlines()) == 1 and not (tmp_path / "b").exists()


@pytest.mark.parametrize("model", ["mobile_sam", "sam_hq_vit_b"])
@pytest.mark.parametrize("kind", ["wrong model", "truncated", "pickle"])
def test_bad_checkpoints_on_the_command_line_are_one_line_and_write_nothing(tmp_path, kind, model):
    """MobileSAM and HQ-SAM (segment-anything-hq's models) refuse bad files alike."""
    bad = tmp_path / "bad.pt"
    if kind == "wrong model":
        torch.save(build_sam_from_spec(tiny_sam_spec()).state_dict(), bad)
    elif kind == "truncated":
        torch.save(build_sam_from_spec(tiny_sam_spec()).state_dict(), bad)
        bad.write_bytes(bad.read_bytes()[:2000])
    else:
        torch.save({"model": _Pickled()}, bad)
    video, mask, _ = make_input(tmp_path, n_frames=2)
    out = tmp_path / "out"
    args = ["--model", model, "--checkpoint", str(bad), "-q"]
    result = CliRunner().invoke(
        cli, ["track", str(video), "--mask", str(mask), "--out", str(out), *args]
    )
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and str(bad) in result.output
    assert not out.exists()


class _Pickled:
    def __reduce__(self):
        return (print, ("unpickled",))


@pytest.mark.slow
def test_personalize_segment_and_find_with_mobile_sam(tmp_path, checkpoint):
    video, _, _ = make_input(tmp_path, n_frames=3)
    model = ["--model", "mobile_sam", "--checkpoint", str(checkpoint), "-q"]
    personalize_segment_find(tmp_path, video, model, "mobile_sam")
