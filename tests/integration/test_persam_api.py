"""The image-mode PerSAM API: inputs, masks, padding, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from persam_video import PerSAM, PerSAMConfig
from persam_video.persam.prior import pool_embedding, reference_cells, select_points, similarity_map
from tests.helpers import ellipse_mask, encode_image, random_image


@pytest.fixture
def scene(rng):
    image = random_image(rng, 90, 140)
    mask = ellipse_mask(90, 140, 45, 60, 25, 35)
    return image, mask


def test_public_api_shapes(tiny_sam, scene):
    image, mask = scene
    persam = PerSAM(tiny_sam, PerSAMConfig.paper_image())
    target = persam.personalize(image, mask)
    assert target.embedding.shape == (tiny_sam.prompt_encoder.embed_dim,)
    res = persam.segment(image, target)
    assert res.mask.shape == (90, 140) and res.mask.dtype == bool
    assert isinstance(res.score, float)
    assert res.points.shape == (2, 2) and res.labels.tolist() == [1, 0]
    assert res.similarity.shape == (90, 140) and res.similarity.dtype == np.float32
    grid = tiny_sam.prompt_encoder.image_embedding_size
    assert res.logits.shape == (1, 4 * grid[0], 4 * grid[1])
    # The positive point is where the similarity map peaks, in (x, y) order.
    x, y = res.points[0].astype(int)
    assert res.similarity[y, x] == res.similarity.max()
    assert res.similarity[int(res.points[1, 1]), int(res.points[1, 0])] == res.similarity.min()


def test_point_selection_is_x_then_y():
    sim = torch.zeros(1, 30, 50)
    sim[0, 7, 41] = 2.0  # row 7, column 41
    sim[0, 22, 3] = -2.0
    points, labels = select_points(sim, 1, 1)
    assert points[0].tolist() == [[41.0, 7.0], [3.0, 22.0]]
    assert labels[0].tolist() == [1, 0]
    points, labels = select_points(sim, 2, 0)
    assert points.shape == (1, 2, 2) and labels.tolist() == [[1, 1]]


@pytest.mark.parametrize("size", [(60, 150), (150, 60)])
def test_similarity_map_is_aligned_on_non_square_images(tiny_sam, size):
    """A feature cell's similarity lands on the image region that cell covers (padding removed)."""
    image = np.zeros((*size, 3), np.uint8)
    feats = encode_image(tiny_sam, image)
    grid = torch.zeros(1, *feats.grid_size)
    rows, cols = feats.content_grid
    grid[0, rows - 1, cols - 1] = 1.0  # last cell with content: the bottom-right image corner
    upsampled = similarity_map(tiny_sam, feats, grid)[0]
    y, x = np.unravel_index(int(upsampled.argmax()), size)
    assert y > size[0] * 0.8 and x > size[1] * 0.8
    # The padding cells beyond it do not show up in the image.
    assert upsampled.shape == size


def test_mask_formats_give_the_same_target(tiny_sam, scene):
    image, mask = scene
    persam = PerSAM(tiny_sam)
    want = persam.personalize(image, mask).embedding
    for variant in (
        mask.astype(np.uint8),
        mask.astype(np.uint8) * 255,
        mask[..., None],
        mask.astype(np.float32),
        mask.astype(np.int64),
    ):
        assert torch.equal(persam.personalize(image, variant).embedding, want)


def test_empty_and_tiny_masks(tiny_sam, scene):
    image, _ = scene
    persam = PerSAM(tiny_sam, PerSAMConfig.paper_image())
    with pytest.raises(ValueError, match="mask is empty"):
        persam.personalize(image, np.zeros((90, 140), bool))
    tiny = np.zeros((90, 140), bool)
    tiny[40:42, 70:72] = True
    with pytest.raises(ValueError, match="covers no feature cell.*ref_cells=area"):
        persam.personalize(image, tiny)
    # The area rule still finds the best-covered cell.
    area = PerSAM(tiny_sam, PerSAMConfig())
    feats = area.encode(image)
    cells = reference_cells(tiny_sam, feats, tiny, area.config.prior)
    assert int(cells.sum()) >= 1
    assert area.personalize(image, tiny).embedding.shape == (tiny_sam.prompt_encoder.embed_dim,)


def test_area_rule_counts_covered_cells(tiny_sam):
    """On a 128x128 image (no padding) with a 16-px grid, a mask of exactly 2x3 cells gives 6."""
    image = np.zeros((128, 128, 3), np.uint8)
    feats = encode_image(tiny_sam, image)
    mask = np.zeros((128, 128), bool)
    mask[32:48, 16:64] = True  # rows of cell 2, columns of cells 1..3
    cells = reference_cells(tiny_sam, feats, mask, PerSAMConfig().prior)
    assert cells.sum() == 3 and cells[2, 1:4].all()
    mask[48:64, 16:64] = True
    cells = reference_cells(tiny_sam, feats, mask, PerSAMConfig().prior)
    assert cells.sum() == 6


def test_pool_mean_max(tiny_sam):
    feats = encode_image(tiny_sam, np.zeros((64, 64, 3), np.uint8))
    cells = torch.zeros(feats.grid_size, dtype=torch.bool)
    cells[0, :2] = True
    values = feats.embedding[0, :, 0, :2]
    assert torch.allclose(pool_embedding(feats, cells, "mean"), values.mean(1))
    want = (values.mean(1) + values.max(1).values) / 2
    assert torch.allclose(pool_embedding(feats, cells, "mean_max"), want)


@pytest.mark.parametrize(
    "image,match",
    [
        ([[1, 2, 3]], "numpy array"),
        (np.zeros((10, 10), np.uint8), r"shape \(H, W, 3\)"),
        (np.zeros((10, 10, 4), np.uint8), r"shape \(H, W, 3\)"),
        (np.zeros((10, 10, 3), np.float32), "uint8"),
        (np.zeros((0, 10, 3), np.uint8), "empty"),
    ],
)
def test_bad_images(tiny_sam, scene, image, match):
    persam = PerSAM(tiny_sam)
    target = persam.personalize(*scene)
    with pytest.raises(ValueError, match=match):
        persam.segment(image, target)
    with pytest.raises(ValueError, match=match):
        persam.personalize(image, np.ones((10, 10), bool))


@pytest.mark.parametrize(
    "mask,match",
    [
        ("mask.png", "numpy array"),
        (np.ones((90, 140, 3), bool), r"shape \(H, W\)"),
        (np.ones((45, 70), bool), r"size \(45, 70\) but the image has size \(90, 140\)"),
        (np.arange(90 * 140).reshape(90, 140) % 3, "binary"),
        (np.full((90, 140), "a"), "bool or numeric"),
    ],
)
def test_bad_masks(tiny_sam, scene, mask, match):
    with pytest.raises(ValueError, match=match):
        PerSAM(tiny_sam).personalize(scene[0], mask)


def test_bad_targets_and_models(tiny_sam, small_sam, scene):
    with pytest.raises(ValueError, match="segment-anything or segment-anything-hq Sam model"):
        PerSAM("vit_b")
    persam = PerSAM(tiny_sam)
    with pytest.raises(ValueError, match="must be a Target"):
        persam.segment(scene[0], scene[1])
    other = PerSAM(small_sam).personalize(*scene)
    # Refused for the right reason: the other model's embeddings have another width.
    assert other.embedding.shape == (small_sam.prompt_encoder.embed_dim,)
    assert small_sam.prompt_encoder.embed_dim != tiny_sam.prompt_encoder.embed_dim
    with pytest.raises(ValueError, match="64 channels, this model 32"):
        persam.segment(scene[0], other)


def test_stock_predictor_still_works_after_persam(tiny_sam, scene):
    from segment_anything import SamPredictor

    image, mask = scene
    predictor = SamPredictor(tiny_sam)
    predictor.set_image(image)
    before = predictor.predict(np.array([[50.0, 40.0]]), np.array([1]))[0]
    persam = PerSAM(tiny_sam, PerSAMConfig.paper_image())
    persam.segment(image, persam.personalize(image, mask))
    after = predictor.predict(np.array([[50.0, 40.0]]), np.array([1]))[0]
    np.testing.assert_array_equal(before, after)


def test_working_resolution_keeps_the_mask_in_place():
    """decode.work_size computes frame-size maps smaller; masks still land on the object."""
    from persam_video.model.registry import load_sam
    from persam_video.synthetic import make_scene

    sam = load_sam("demo", device="cpu")
    scene = make_scene(np.random.default_rng(11), (300, 420), n_objects=2)
    mask = scene.labels == 1
    full = PerSAM(sam, PerSAMConfig())
    small = PerSAM(sam, PerSAMConfig().with_overrides(["decode.work_size=160"]))
    target = full.personalize(scene.image, mask)
    a, b = full.segment(scene.image, target), small.segment(scene.image, target)
    assert b.mask.shape == mask.shape and b.similarity.shape == mask.shape
    iou = (a.mask & b.mask).sum() / max((a.mask | b.mask).sum(), 1)
    assert iou > 0.9, iou
    assert (b.mask & mask).sum() / max((b.mask | mask).sum(), 1) > 0.7
    assert np.abs(a.points - b.points).max() < 420 / 160 * 3  # a few working pixels
