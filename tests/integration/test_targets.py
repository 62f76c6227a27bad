"""PerSAM-F, target files, and the personalize / segment / track --target commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import save_file

import persam_video.cli.common as cli_module
from persam_video import PerSAM, PerSAMConfig
from persam_video.apps.target_file import check_compatible, load_target, save_target
from persam_video.cli import cli
from persam_video.io import read_mask, write_label_png
from persam_video.model import registry as models
from persam_video.model.spec import build_sam_from_spec, tiny_sam_spec
from persam_video.persam.api import Target
from persam_video.persam.finetune import dice_loss, fit_mask_weights, focal_loss, mix
from tests.helpers import ellipse_mask, encode_image, random_image
from tests.video_factory import make_video

FINETUNE = ["finetune.enabled=true", "finetune.steps=200"]


def test_losses_match_hand_computation():
    logits = torch.tensor([[2.0, -1.0, 0.0, 3.0]])
    target = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    p = logits.sigmoid()
    dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    assert torch.isclose(dice_loss(logits, target), dice)
    ce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    alpha = 0.25 * target + 0.75 * (1 - target)
    assert torch.isclose(focal_loss(logits, target), (alpha * ce * (1 - p_t) ** 2).mean())
    assert torch.allclose(mix(torch.tensor([0.2, 0.3])), torch.tensor([0.5, 0.2, 0.3]))


def test_finetune_learns_to_prefer_the_output_that_matches(tiny_sam, monkeypatch):
    """When one multimask output equals the reference mask, PerSAM-F moves weight onto it."""
    rng = np.random.default_rng(2)
    image = random_image(rng, 64, 96)
    mask = ellipse_mask(64, 96, 30, 40, 15, 20)
    feats = encode_image(tiny_sam, image)
    good = torch.where(torch.from_numpy(mask), 8.0, -8.0)
    fake = torch.stack([-good, torch.full_like(good, -3.0), good])[None]  # (1, 3, H, W)
    monkeypatch.setattr(
        "persam_video.persam.finetune.multimask_outputs",
        lambda sam, f, first: (fake, torch.ones(1, 3)),
    )
    config = PerSAMConfig().with_overrides(["finetune.steps=300", "finetune.lr=0.01"])
    result = fit_mask_weights(tiny_sam, config, torch.randn(32), [(feats, torch.from_numpy(mask))])
    assert result.weights.shape == (3,) and torch.isclose(result.weights.sum(), torch.tensor(1.0))
    assert int(result.weights.argmax()) == 2
    assert result.final_loss < 0.5 * result.initial_loss
    assert result.steps == 300 and result.steps_per_second > 0


def test_persam_f_changes_the_first_step(tiny_sam):
    rng = np.random.default_rng(4)
    image = random_image(rng, 80, 100)
    mask = ellipse_mask(80, 100, 40, 50, 20, 25)
    no_refinement = PerSAMConfig().with_overrides(["decode.refine_steps=0"])
    tuned = PerSAM(tiny_sam, no_refinement.with_overrides(FINETUNE))
    target = tuned.personalize(image, mask)
    assert target.mask_weights is not None and target.mask_weights.shape == (3,)
    plain = PerSAM(tiny_sam, no_refinement).segment(image, Target(target.embedding))
    tuned_result = tuned.segment(image, target)
    assert not np.array_equal(plain.logits, tuned_result.logits)


def test_multi_shot_embedding_is_the_mean(tiny_sam):
    rng = np.random.default_rng(5)
    shots = [
        (random_image(rng, 64, 80), ellipse_mask(64, 80, 30, 40, 15, 20)),
        (random_image(rng, 72, 60), ellipse_mask(72, 60, 36, 30, 20, 15)),
    ]
    persam = PerSAM(tiny_sam)
    singles = [persam.personalize(*shot).embedding for shot in shots]
    both = persam.personalize_shots(shots).embedding
    assert torch.allclose(both, (singles[0] + singles[1]) / 2)
    with pytest.raises(ValueError, match="reference shot 2"):
        persam.personalize_shots([shots[0], (shots[1][0], np.zeros((72, 60), bool))])


def test_target_file_round_trip_and_refusals(tmp_path):
    target = Target(torch.randn(32), torch.tensor([0.5, 0.3, 0.2]))
    model = {"model": "vit_b", "checkpoint": None, "checkpoint_sha256": "ab" * 32}
    path = save_target(tmp_path / "cat.target", target, model=model, config=PerSAMConfig(), shots=2)
    loaded = load_target(path)
    assert torch.equal(loaded.target.embedding, target.embedding)
    assert torch.equal(loaded.target.mask_weights, target.mask_weights)
    assert loaded.model == model and loaded.shots == 2 and loaded.config == PerSAMConfig()
    check_compatible(loaded, model)
    with pytest.raises(ValueError, match="made with model vit_b, not vit_h"):
        check_compatible(loaded, {**model, "model": "vit_h"})
    with pytest.raises(ValueError, match="another vit_b checkpoint"):
        check_compatible(loaded, {**model, "checkpoint_sha256": "cd" * 32})
    # Another format version, a foreign safetensors file, and a pickle are all refused.
    other = tmp_path / "future.target"
    save_file(
        {"embedding": torch.zeros(4)},
        str(other),
        metadata={"format": "persam-video target", "format_version": "9", "persam_video": "9.0"},
    )
    with pytest.raises(ValueError, match="target format 9"):
        load_target(other)
    foreign = tmp_path / "foreign.target"
    save_file({"weight": torch.zeros(4)}, str(foreign))
    with pytest.raises(ValueError, match="not a persam-video target file"):
        load_target(foreign)
    pickled = tmp_path / "pickle.target"
    torch.save({"embedding": torch.zeros(4)}, pickled)
    with pytest.raises(ValueError, match="not a persam-video target file"):
        load_target(pickled)


def test_a_target_file_of_0_1_with_removed_config_keys_still_loads(tmp_path):
    """Target files store their config; those written before the experiments' keys were
    removed (``config.REMOVED_KEYS``) hold them, at the values every preset had."""
    config = PerSAMConfig.paper_video().to_dict()
    config["prior"]["others_as_negatives"] = False
    config["decode"].update(
        guide_refinement=False, select="last", select_prior_weight=1.0, select_contrast_weight=1.0
    )
    config["memory"] = {"bank": 0, "min_score": 0.8, "stride": 5, "parts": 0}
    model = {"model": "vit_b", "checkpoint": None, "checkpoint_sha256": "ab" * 32}
    path = tmp_path / "old.target"
    metadata = {
        "format": "persam-video target",
        "format_version": "1",
        "persam_video": "0.1.0",
        "model": json.dumps(model),
        "config": json.dumps(config),
        "shots": "1",
        "finetune": "null",
    }
    save_file({"embedding": torch.ones(32)}, str(path), metadata=metadata)
    loaded = load_target(path)
    assert loaded.config == PerSAMConfig.paper_video() and loaded.made_by == "0.1.0"
    assert torch.equal(loaded.target.embedding, torch.ones(32))


@pytest.fixture
def fake_model(monkeypatch):
    """A fresh tiny model per test: the CLI configures (and so changes) the model it loads."""
    tiny_sam = build_sam_from_spec(tiny_sam_spec(), seed=0)
    monkeypatch.setattr(cli_module, "load_model", lambda *args, **kwargs: tiny_sam)
    monkeypatch.setattr(
        models,
        "model_metadata",
        lambda name, checkpoint=None: {"model": name, "checkpoint_sha256": "x"},
    )
    return tiny_sam


def test_personalize_segment_and_track_with_a_target(tmp_path, fake_model):
    rng = np.random.default_rng(6)
    images = []
    album = tmp_path / "photos"
    album.mkdir()
    for i in range(3):
        path = album / f"photo{i}.png"
        Image.fromarray(random_image(rng, 70, 90)).save(path)
        images.append(path)
    labels = np.zeros((70, 90), np.uint8)
    labels[ellipse_mask(70, 90, 35, 45, 18, 22)] = 3
    labels[:8, :8] = 5
    mask = tmp_path / "mask.png"
    write_label_png(mask, labels)
    runner = CliRunner()
    target = tmp_path / "obj.target"
    ambiguous = runner.invoke(
        cli, ["personalize", str(images[0]), "--mask", str(mask), "-o", str(target)]
    )
    assert ambiguous.exit_code == 2 and "choose one with --object" in ambiguous.output
    made = runner.invoke(
        cli,
        [
            "personalize",
            str(images[0]),
            "--mask",
            str(mask),
            "--object",
            "3",
            "--image",
            str(images[1]),
            "--mask",
            str(mask),
            "-o",
            str(target),
            "--finetune",
            "--set",
            "finetune.steps=50",
        ],
    )
    assert made.exit_code == 0, made.output
    assert "2 shots" in made.output and "PerSAM-F weights" in made.output
    assert load_target(target).target.mask_weights is not None

    out = tmp_path / "album"
    found = runner.invoke(
        cli, ["segment", str(album), "--target", str(target), "--out", str(out), "-q"]
    )
    assert found.exit_code == 0, found.output
    doc = json.loads((out / "results.json").read_text())
    assert len(doc["images"]) == 3
    for record, image in zip(doc["images"], images, strict=True):
        result = read_mask(out / f"{image.stem}.png")
        assert set(np.unique(result)) <= {0, 1}
        assert (result > 0).sum() == record["area"]
        assert record["found"] == (record["area"] > 0)
        assert (out / f"{image.stem}_overlay.jpg").is_file()

    video = tmp_path / "clip.mp4"
    make_video(video, n_frames=5, size_hw=(48, 64))
    tracked = runner.invoke(
        cli,
        [
            "track",
            str(video),
            "--target",
            str(target),
            "--target",
            str(target),
            "--out",
            str(tmp_path / "t"),
            "-q",
        ],
    )
    assert tracked.exit_code == 0, tracked.output
    results = json.loads((tmp_path / "t" / "results.json").read_text())
    assert results["object_ids"] == [1, 2] and len(results["frames"]) == 5
    assert set(results["frames"][0]["objects"]) == {"1", "2"}

    both = runner.invoke(
        cli,
        [
            "track",
            str(video),
            "--target",
            str(target),
            "--mask",
            str(mask),
            "--out",
            str(tmp_path / "x"),
        ],
    )
    # Targets combine with prompts; this mask is of another size, said in one line.
    assert both.exit_code == 2 and both.output.startswith("error: --mask ")
    assert len(both.output.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def test_targets_of_another_model_are_refused_on_the_command_line(tmp_path, fake_model):
    target = tmp_path / "t.target"
    save_target(
        target,
        Target(torch.randn(32)),
        config=PerSAMConfig(),
        shots=1,
        model={"model": "vit_h", "checkpoint_sha256": "y"},
    )
    video = tmp_path / "clip.mp4"
    make_video(video, n_frames=3, size_hw=(48, 64))
    result = CliRunner().invoke(
        cli,
        [
            "track",
            str(video),
            "--target",
            str(target),
            "--out",
            str(tmp_path / "o"),
            "--model",
            "vit_b",
        ],
    )
    assert result.exit_code == 2
    assert "made with model vit_h, not vit_b" in result.output
