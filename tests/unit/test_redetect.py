"""PerSAM's location prior for the memory engine's re-detection, on constructed features."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from persam_video.memory.redetect import (
    candidate_clicks,
    contrast_of,
    grid_mask,
    reference,
    similarity,
)

GRID = (8, 8)
SIZE = (64, 96)  # (H, W) frame: 8 x 12 pixels a cell, the model's grid is square


def features_with_object(rows: slice, cols: slice, seed: int = 0) -> torch.Tensor:
    """(C, 8, 8) features: background cells near one direction, the object's near another."""
    g = torch.Generator().manual_seed(seed)
    obj, bg = torch.randn(16, generator=g), torch.randn(16, generator=g)
    features = bg[:, None, None] + 0.1 * torch.randn(16, *GRID, generator=g)
    features[:, rows, cols] = obj[:, None, None] + 0.1 * torch.randn(16, 2, 2, generator=g)
    return features


def frame_mask(rows: slice, cols: slice) -> torch.Tensor:
    """The (H, W) mask covering the grid cells ``rows`` x ``cols`` of a SIZE frame."""
    mask = torch.zeros(SIZE, dtype=torch.bool)
    mask[rows.start * 8 : rows.stop * 8, cols.start * 12 : cols.stop * 12] = True
    return mask


def test_grid_mask_takes_cells_more_than_half_covered():
    mask = frame_mask(slice(2, 4), slice(3, 5))
    cells = grid_mask(mask, GRID)
    assert cells.sum() == 4 and cells[2:4, 3:5].all()
    sliver = torch.zeros(SIZE, dtype=torch.bool)
    sliver[10, 20] = True  # one pixel: the most covered cell stands in
    assert grid_mask(sliver, GRID).sum() == 1


def test_the_reference_stands_out_and_finds_the_object_where_it_moved():
    here = features_with_object(slice(2, 4), slice(3, 5))
    ref = reference(here, frame_mask(slice(2, 4), slice(3, 5)))
    assert ref is not None and math.isclose(float(ref.embedding.norm()), 1.0, rel_tol=1e-5)
    assert ref.inside > 0.9 and ref.contrast > 0.5
    assert ref.outside < ref.peak_needed(0.5) < ref.inside
    moved = features_with_object(slice(5, 7), slice(0, 2), seed=0)
    peak, clicks = candidate_clicks(moved, ref, SIZE)
    assert peak >= ref.peak_needed(0.5)
    (x, y), (nx, ny) = clicks
    assert 0 <= x < 24 and 40 <= y < 56  # inside the moved object's cells (rows 5-6, cols 0-1)
    assert not (0 <= nx < 24 and 40 <= ny < 56)
    assert float(similarity(moved, ref.embedding)[5:7, 0:2].min()) > ref.peak_needed(0.5)


def test_the_identity_check_tells_the_object_from_the_background():
    here = features_with_object(slice(2, 4), slice(3, 5))
    ref = reference(here, frame_mask(slice(2, 4), slice(3, 5)))
    assert ref is not None
    moved = features_with_object(slice(5, 7), slice(0, 2))
    on_object = contrast_of(moved, ref, frame_mask(slice(5, 7), slice(0, 2)))
    on_background = contrast_of(moved, ref, frame_mask(slice(0, 2), slice(5, 7)))
    assert on_object is not None and on_object >= 0.5 * ref.contrast
    assert on_background is not None and on_background < 0
    assert contrast_of(moved, ref, torch.zeros(SIZE, dtype=torch.bool)) is None
    assert reference(here, torch.ones(SIZE, dtype=torch.bool)) is None  # nothing outside


def test_decoder_inputs_point_the_attention_at_the_target_and_scale_its_embedding():
    from persam_video.memory.guidance import decoder_inputs

    features = torch.randn(8, 6, 6, generator=torch.Generator().manual_seed(0))
    features[:, 2:4, 3:5] += 8 * torch.eye(8)[0][:, None, None]  # the target's cells
    embedding = F.normalize(features[:, 2:4, 3:5].mean(dim=(1, 2)), dim=0)
    both = decoder_inputs(features, embedding, guided_attention=True, semantic_prompt=True)
    sim = both["attention_similarity"]
    assert sim.shape == (1, 1, 1, 36) and 0 < sim.min() and sim.max() < 1
    top = set(sim.flatten().topk(4).indices.tolist())
    assert top == {2 * 6 + 3, 2 * 6 + 4, 3 * 6 + 3, 3 * 6 + 4}
    target = both["target_embedding"]
    assert target.shape == (1, 1, 1, 8)
    assert torch.allclose(target.norm(), features.flatten(1).norm(dim=0).mean())
    assert decoder_inputs(features, embedding, guided_attention=False, semantic_prompt=False) == {}


def test_refinement_prompts_the_masks_box_and_the_targets_peak_inside_it():
    """``memory.refine``: the tracked mask's tight box, and a click at the cell most like the
    target among the cells the mask covers (not the frame's peak outside it); without a
    reference, or when the peak's centre falls off the mask, the mask's most interior pixel."""
    from persam_video.memory.refine import interior_point, refine_prompt

    features = features_with_object(slice(2, 4), slice(2, 4))
    object_mask = torch.zeros(SIZE, dtype=torch.bool)
    object_mask[16:32, 24:48] = True  # cells (2..3, 2..3)
    ref = reference(features, object_mask)
    assert ref is not None
    mask = torch.zeros(SIZE, dtype=torch.bool)
    mask[8:40, 12:60] = True  # covers the object's cells and more
    click, box = refine_prompt(mask, features, ref)
    assert box == (12.0, 8.0, 59.0, 39.0)
    col, row = int(click[0] // 12), int(click[1] // 8)
    assert (row, col) in {(2, 2), (2, 3), (3, 2), (3, 3)}
    away = torch.zeros(SIZE, dtype=torch.bool)
    away[40:64, 60:96] = True  # the target is not in it: the best cell inside is still inside
    click, _ = refine_prompt(away, features, ref)
    assert away[int(click[1]), int(click[0])]
    assert refine_prompt(mask, features, None) == (interior_point(mask.numpy()), box)
    x, y = interior_point(mask.numpy())  # 16 px from the border: the rectangle's middle rows
    assert y in (23.0, 24.0) and 12 + 15 <= x <= 59 - 15
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(96), indexing="ij")
    disk = (yy - 40) ** 2 + (xx - 30) ** 2 <= 10**2
    assert interior_point(disk.numpy()) == (30.0, 40.0)
    assert refine_prompt(torch.zeros(SIZE, dtype=torch.bool), features, ref) is None
