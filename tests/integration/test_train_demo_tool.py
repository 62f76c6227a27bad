"""tools/train_demo_model.py: training inputs and decoding match what inference computes."""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from persam_video.model.spec import build_sam_from_spec, tiny_sam_spec
from tests.helpers import REPO_ROOT, encode_image

TOOL = REPO_ROOT / "tools" / "train_demo_model.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("train_demo_model", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture(scope="module")
def sam():
    return build_sam_from_spec(tiny_sam_spec(image_size=128), seed=0)


@pytest.fixture(scope="module")
def batch(tool, sam):
    """Two training pairs (four frames) pre-processed for the 128-px model, two prompts each."""
    stream = tool.PairStream(seed=0, image_size=sam.image_encoder.img_size, prompts_per_frame=2)
    rng = np.random.default_rng(7)
    return tool.flatten_pairs(default_collate([stream.make_item(rng) for _ in range(2)]))


def test_model_input_is_what_inference_encodes(tool, sam, rng):
    image = rng.integers(0, 256, (90, 150, 3), dtype=np.uint8)
    labels = np.zeros((90, 150), np.uint8)
    padded, padded_labels, (h, w) = tool.preprocess_frame(image, labels, sam.image_encoder.img_size)
    assert (h, w) == (77, 128)
    assert (padded_labels[h:] == tool.PAD_LABEL).all() and (padded_labels[:h, :w] == 0).all()
    x = tool.model_input(sam, torch.as_tensor(padded)[None], torch.tensor([[h, w]]))
    with torch.no_grad():
        feats = encode_image(sam, image)
        assert feats.input_size == (h, w)
        assert torch.equal(sam.image_encoder(x), feats.embedding)


def test_batched_decoding_equals_stock_decoding(tool, sam, batch):
    """Decoding prompts of several frames in one call = SAM's decoder frame by frame."""
    kind = torch.full_like(batch["obj"], tool.KIND_POINT_NEG)
    kind[::2] = tool.KIND_BOX
    with torch.no_grad():
        x = tool.model_input(sam, batch["image"], batch["content_hw"])
        embeddings = sam.image_encoder(x)
        for group in tool.make_groups(batch, kind):
            mask_input = torch.randn(len(group.frame), 1, 32, 32)
            logits, iou = tool.decode_group(sam, embeddings, group, mask_input)
            assert logits.shape == (len(group.frame), 4, 32, 32)
            for row, frame in enumerate(group.frame.tolist()):
                points = (group.points[row : row + 1], group.labels[row : row + 1])
                sparse, dense = sam.prompt_encoder(
                    points=points if group.points.shape[1] else None,
                    boxes=None if group.box is None else group.box[row : row + 1],
                    masks=mask_input[row : row + 1],
                )
                ref_logits, ref_iou = sam.mask_decoder.predict_masks(
                    embeddings[frame : frame + 1],
                    sam.prompt_encoder.get_dense_pe(),
                    sparse,
                    dense,
                )
                torch.testing.assert_close(logits[row : row + 1], ref_logits)
                torch.testing.assert_close(iou[row : row + 1], ref_iou)


def test_prompts_lie_on_their_object(tool, batch):
    for frame in range(len(batch["obj"])):
        labels = batch["labels"][frame]
        for obj, points, box in zip(
            batch["obj"][frame], batch["points"][frame], batch["box"][frame], strict=True
        ):
            (px, py), (nx, ny) = points.long().tolist()
            assert labels[py, px] == obj
            assert labels[ny, nx] not in (obj, tool.PAD_LABEL)
            assert box[0] <= box[2] and box[1] <= box[3]


def test_corrective_clicks_fix_errors(tool):
    target = torch.zeros(2, 16, 16, dtype=torch.bool)
    target[:, 4:12, 4:12] = True
    pred = torch.zeros_like(target)
    pred[0] = target[0]
    pred[0, 0, 0] = True  # one false positive: a negative click there
    pred[1, 4:12, 4:8] = True  # misses the right half: a positive click there
    valid = torch.ones_like(target)
    xy, label = tool.corrective_clicks(pred, target, valid, torch.Generator().manual_seed(0))
    assert xy[0, 0].tolist() == [0.0, 0.0] and label[0, 0] == 0
    x, y = xy[1, 0].long().tolist()
    assert 8 <= x < 12 and 4 <= y < 12 and label[1, 0] == 1


def test_embedding_loss_rewards_features_that_tell_objects_apart(tool, batch):
    labels = batch["labels"]
    grid = 8
    # Ideal features: the share of each label in each cell (so objects are told apart).
    onehot = torch.nn.functional.one_hot(labels.long(), 256).permute(0, 3, 1, 2).float()
    ideal = torch.nn.functional.adaptive_avg_pool2d(onehot, grid)
    loss, hit = tool.embedding_loss(ideal, labels, batch["content_hw"], 128)
    noise = torch.randn(ideal.shape, generator=torch.Generator().manual_seed(0))
    random_loss, _ = tool.embedding_loss(noise, labels, batch["content_hw"], 128)
    assert hit > 0.9
    assert loss < random_loss


def test_learning_rate_schedule(tool):
    lrs = [tool.learning_rate(step, 100, 1.0, 10) for step in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:]))
    assert lrs[-1] == pytest.approx(tool.MIN_LR_FRACTION, abs=1e-3)


def test_model_spec_follows_the_command_line(tool):
    default = tool.model_spec(tool.parse_args([]))
    assert default == tool.DEMO_SPEC  # the defaults are the bundled demo model's recipe
    args = tool.parse_args(
        [
            "--image-size",
            "320",
            "--encoder-dim",
            "64",
            "--encoder-depth",
            "6",
            "--encoder-heads",
            "2",
            "--decoder-dim",
            "96",
        ]
    )
    spec = tool.model_spec(args)
    assert (spec.image_size, spec.encoder_dim, spec.encoder_depth) == (320, 64, 6)
    assert spec.encoder_global_attn == (2, 5) and spec.encoder_heads == 2
    assert (spec.decoder_dim, spec.decoder_mlp_dim, spec.iou_head_hidden_dim) == (96, 384, 96)
    assert tool.parse_args(["--embedding-weight", "0.2"]).embedding_weight == 0.2


@pytest.mark.slow
def test_a_short_training_run_writes_a_model_of_the_asked_architecture(tool, tmp_path):
    """Two steps of a small architecture, evaluated on a handful of scenes: the file loads back
    with its spec and training facts (what the benchmark model suite is made of)."""
    out = tmp_path / "m.safetensors"
    tool.main(
        [
            "--out",
            str(out),
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--workers",
            "0",
            "--image-size",
            "128",
            "--loss-size",
            "64",
            "--encoder-dim",
            "32",
            "--encoder-depth",
            "2",
            "--encoder-heads",
            "2",
            "--decoder-dim",
            "32",
            "--embedding-weight",
            "0.25",
            "--name",
            "suite test",
            "--val-scenes",
            "2",
            "--val-pairs",
            "2",
            "--persam-pairs",
            "1",
            "--log-every",
            "1",
        ]
    )
    sam, metadata = tool.load_weights(out)
    assert metadata["name"] == "suite test"
    assert sam.image_encoder.img_size == 128 and len(sam.image_encoder.blocks) == 2
    training = json.loads(metadata["training"])
    assert training["steps"] == 2 and training["args"]["embedding_weight"] == 0.25
