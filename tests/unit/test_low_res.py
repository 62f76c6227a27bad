"""Intermediate masks read at SAM's low resolution (``decode.intermediate: low``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything.utils.transforms import ResizeLongestSide

from persam_video import PerSAM, PerSAMConfig
from persam_video.config import load_config
from persam_video.persam.features import FrameFeatures
from persam_video.persam.geometry import low_res_area, low_res_box, mask_box, upsample_logits

#: Frame sizes (H, W): smaller and larger than the model's input, both orientations.
SIZES = [(90, 140), (140, 90), (480, 854), (1080, 1920), (97, 97)]


def geometry(sam, size: tuple[int, int]) -> FrameFeatures:
    image_size = sam.image_encoder.img_size
    input_size = ResizeLongestSide.get_preprocess_shape(*size, image_size)
    grid = sam.prompt_encoder.image_embedding_size
    return FrameFeatures(torch.zeros(1, 1, *grid), size, tuple(input_size), image_size)


def blob_logits(feats: FrameFeatures, rng: np.random.Generator) -> torch.Tensor:
    """(1, 4h, 4w) logits of a random ellipse inside the frame's content."""
    low = feats.image_size // 4  # low-res side (4 x the 16-px patch grid)
    rows = feats.input_size[0] * low / feats.image_size
    cols = feats.input_size[1] * low / feats.image_size
    cy, cx = rng.uniform(0.2, 0.8) * rows, rng.uniform(0.2, 0.8) * cols
    ry, rx = rng.uniform(0.05, 0.3) * rows + 0.7, rng.uniform(0.05, 0.3) * cols + 0.7
    yy, xx = np.mgrid[0:low, 0:low]
    field = 1.0 - ((yy - cy) / ry) ** 2 - ((xx - cx) / rx) ** 2
    return torch.from_numpy(field * rng.uniform(2, 20)).float()[None]


def cell_pixels(feats: FrameFeatures, axis: int) -> float:
    """Frame pixels per low-resolution cell along ``axis`` (0 rows, 1 columns)."""
    return 4 * feats.original_size[axis] / feats.input_size[axis]


@pytest.mark.parametrize("size", SIZES)
def test_low_res_box_matches_the_upsampled_mask(tiny_sam, size):
    feats = geometry(tiny_sam, size)
    rng = np.random.default_rng(sum(size))
    cell = max(cell_pixels(feats, 0), cell_pixels(feats, 1))
    deviations = []
    for _ in range(20):
        low = blob_logits(feats, rng)
        full = upsample_logits(tiny_sam, feats, low[None])[0, 0] > tiny_sam.mask_threshold
        want, got = mask_box(full), low_res_box(tiny_sam, feats, low)
        if want is None:
            continue
        assert got is not None
        # Always contains the frame-size box ...
        assert got[0] <= want[0] and got[1] <= want[1], (got, want)
        assert got[2] >= want[2] and got[3] >= want[3], (got, want)
        deviations.append(torch.cat([want[:2] - got[:2], got[2:] - want[2:]]))
    # ... and for ellipses only exceeds it by a small fraction of a low-resolution cell.
    deviations = torch.stack(deviations)
    assert len(deviations) >= 15
    assert deviations.max() <= max(1.0, 0.25 * cell), deviations
    assert deviations.mean() <= 0.05 * cell, deviations


@pytest.mark.parametrize("size", [(90, 140), (480, 854)])
def test_low_res_box_contains_any_mask(tiny_sam, size):
    """Containment holds for arbitrary logits too (bilinear weights are convex)."""
    feats = geometry(tiny_sam, size)
    generator = torch.Generator().manual_seed(5)
    side = tiny_sam.prompt_encoder.image_embedding_size[0] * 4
    for threshold_shift in (-2.0, -1.0, 0.0):
        low = torch.randn(1, side, side, generator=generator) * 0.5 - 1.5 - threshold_shift
        full = upsample_logits(tiny_sam, feats, low[None])[0, 0] > tiny_sam.mask_threshold
        want, got = mask_box(full), low_res_box(tiny_sam, feats, low)
        if want is None:
            continue
        assert got is not None
        assert bool((got[:2] <= want[:2]).all() and (got[2:] >= want[2:]).all())


def test_low_res_box_of_empty_and_padding_only_masks(tiny_sam):
    feats = geometry(tiny_sam, (60, 140))  # wide: the bottom of SAM's input is padding
    side = tiny_sam.prompt_encoder.image_embedding_size[0] * 4
    low = torch.full((1, side, side), -5.0)
    assert low_res_box(tiny_sam, feats, low) is None
    low[:, side - 4 :, :] = 5.0  # positive only in the padding rows
    assert low_res_box(tiny_sam, feats, low) is None
    assert low_res_area(feats, low, tiny_sam.mask_threshold).item() == 0


def test_low_res_area_ranks_masks_like_the_frame(tiny_sam):
    feats = geometry(tiny_sam, (480, 854))
    rng = np.random.default_rng(3)
    agree = 0
    for _ in range(20):
        low = torch.stack([blob_logits(feats, rng) for _ in range(3)], dim=1)  # (1, 3, 4h, 4w)
        full = upsample_logits(tiny_sam, feats, low) > tiny_sam.mask_threshold
        frame_pick = full.flatten(2).sum(-1).argmax(dim=1)
        low_pick = low_res_area(feats, low, tiny_sam.mask_threshold).argmax(dim=1)
        agree += int(frame_pick.item() == low_pick.item())
    assert agree >= 18, agree


def test_low_intermediate_gives_nearly_the_same_masks():
    """On the demo model, reading intermediate masks at low resolution changes little."""
    from persam_video.model.registry import load_sam
    from persam_video.synthetic import make_scene

    sam = load_sam("demo", device="cpu")
    ious = []
    for seed in range(4):
        scene = make_scene(np.random.default_rng(seed), (300, 420), n_objects=2)
        for preset in ("default", "paper_video"):
            base = load_config(preset)
            frame = PerSAM(sam, base.with_overrides(["decode.intermediate=frame"]))
            low = PerSAM(sam, base.with_overrides(["decode.intermediate=low"]))
            target = frame.personalize(scene.image, scene.labels == 1)
            a, b = frame.segment(scene.image, target).mask, low.segment(scene.image, target).mask
            ious.append((a & b).sum() / max((a | b).sum(), 1))
    assert np.mean(ious) > 0.97 and min(ious) > 0.85, ious


def test_presets_choose_the_intermediate_resolution():
    assert load_config("paper_image").decode.intermediate == "frame"
    assert load_config("paper_video").decode.intermediate == "frame"
    assert load_config("default").decode.intermediate == "low"
    with pytest.raises(Exception, match="intermediate"):
        PerSAMConfig().with_overrides(["decode.intermediate=full"])
