"""Tests of the procedural data generator (persam_video.synthetic)."""

from __future__ import annotations

import time
from fractions import Fraction
from itertools import islice, pairwise

import numpy as np
import pytest

from persam_video.synthetic import (
    CLIP_SIZES_HW,
    SPLIT_SEED_RANGE,
    SPLITS,
    TRAIN_RADIUS_RANGE,
    clip_info,
    iter_clip,
    make_clip,
    make_scene,
    make_training_pair,
    make_training_sample,
    split_rng,
    split_seed,
)
from persam_video.synthetic.compose import Actor, Appearance, Pose, build_sprite, compose
from persam_video.synthetic.scenes import (
    TRAIN_MIN_AREA_FRACTION,
    sample_distractor_appearance,
    sample_target_appearances,
)
from persam_video.synthetic.shapes import SHAPE_KINDS, sample_outline

CLIP_SEEDS = range(8)
FIRST_FRAME_FLOOR = 0.01  # every object covers >= 1% of the first frame (the user's annotation)


@pytest.fixture(scope="module")
def clips():
    return [make_clip(seed) for seed in CLIP_SEEDS]


def _centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def _is_multiple_of_16(n: int) -> bool:
    return n % 16 == 0


# ----------------------------------------------------------------------------- clips


def test_clip_is_deterministic_and_seeds_differ():
    first, again = make_clip(5, n_frames=6), make_clip(5, n_frames=6)
    assert first.name == again.name
    for a, b in zip(first.frames + first.labels, again.frames + again.labels, strict=True):
        np.testing.assert_array_equal(a, b)
    other = make_clip(6, n_frames=6, size_hw=first.size_hw)
    assert other.name != first.name
    assert np.abs(other.frames[0].astype(int) - first.frames[0]).mean() > 5.0


def test_clip_shapes_dtypes_and_metadata(clips):
    for clip in clips:
        assert 30 <= len(clip) <= 80
        assert len(clip.labels) == len(clip)
        assert isinstance(clip.fps, Fraction) and clip.fps > 0
        assert 1 <= len(clip.object_ids) <= 4
        assert clip.object_ids == tuple(range(1, len(clip.object_ids) + 1))
        assert set(clip.leaving_ids) <= set(clip.object_ids)
        height, width = clip.size_hw
        for frame, labels in zip(clip.frames, clip.labels, strict=True):
            assert frame.shape == (height, width, 3) and frame.dtype == np.uint8
            assert labels.shape == (height, width) and labels.dtype == np.uint8
            assert set(np.unique(labels)) <= {0, *clip.object_ids}
        assert clip.name.startswith("synth-test-")


def test_clip_sizes_are_neither_square_nor_multiples_of_16():
    sizes = set(CLIP_SIZES_HW) | {clip_info(seed).size_hw for seed in range(30)}
    assert len({clip_info(seed).size_hw for seed in range(30)}) > 3
    for height, width in sizes:
        assert height != width
        assert not _is_multiple_of_16(height) and not _is_multiple_of_16(width)
    assert any(height > width for height, width in CLIP_SIZES_HW), "one portrait size"


def test_overrides_are_respected_and_keep_other_draws():
    clip = make_clip(3, n_frames=4, size_hw=(101, 203), n_objects=2)
    assert len(clip) == 4 and clip.size_hw == (101, 203) and clip.object_ids == (1, 2)
    drawn = clip_info(3)
    assert clip.fps == drawn.fps
    assert clip_info(3, n_objects=1).n_frames == drawn.n_frames
    assert clip_info(3, n_frames=10).size_hw == drawn.size_hw


def test_iter_clip_is_lazy_and_matches_make_clip():
    clip = make_clip(2, n_frames=5)
    pairs = list(iter_clip(2, n_frames=5))
    assert len(pairs) == 5
    for (frame, labels), expected_frame, expected_labels in zip(
        pairs, clip.frames, clip.labels, strict=True
    ):
        np.testing.assert_array_equal(frame, expected_frame)
        np.testing.assert_array_equal(labels, expected_labels)
    start = time.perf_counter()
    first_two = list(islice(iter_clip(2, n_frames=1_000_000), 2))
    assert time.perf_counter() - start < 5.0, "a huge clip must not be rendered up front"
    assert first_two[1][0].shape == clip.frames[0].shape


def test_first_frame_shows_every_object_above_the_area_floor():
    cases = [(seed, None) for seed in range(30)] + [(seed, 8) for seed in range(6)]
    for seed, n_objects in cases:
        info = clip_info(seed, split="val", n_objects=n_objects)
        _, labels = next(iter_clip(seed, split="val", n_objects=n_objects))
        areas = np.bincount(labels.ravel(), minlength=256)[1:]
        floor = FIRST_FRAME_FLOOR * labels.size
        for object_id in info.object_ids:
            assert areas[object_id - 1] >= floor, (seed, object_id, areas[object_id - 1], floor)
        assert not areas[len(info.object_ids) :].any()


def test_objects_move_between_frames(clips):
    for clip in clips:
        short = min(clip.size_hw)
        for object_id in clip.object_ids:
            start = _centroid(clip.labels[0] == object_id)
            shifts = [
                np.linalg.norm(_centroid(labels == object_id) - start)
                for labels in clip.labels[1:]
                if (labels == object_id).any()
            ]
            assert max(shifts) > 0.08 * short, (clip.name, object_id)
            # smooth motion: the label region never teleports between consecutive frames
        for before, after in pairwise(clip.labels):
            assert np.mean(before != after) < 0.25


def test_objects_occlude_each_other_in_some_clips(clips):
    # An object's visible area drops well below its first-frame area while it is in the frame.
    occluded = 0
    for clip in clips:
        for object_id in clip.object_ids:
            areas = np.array([(labels == object_id).sum() for labels in clip.labels])
            occluded += bool(np.any((areas > 0) & (areas < 0.6 * areas[0])))
    assert occluded >= 3


def test_some_objects_leave_the_frame_and_come_back():
    infos = [clip_info(seed) for seed in range(30)]
    leaving = [info for info in infos if info.leaving_ids]
    assert 3 <= len(leaving) < len(infos)
    for info in leaving[:3]:
        clip = make_clip(info.seed)
        (object_id,) = clip.leaving_ids
        present = np.array([(labels == object_id).any() for labels in clip.labels])
        assert present[0]
        gone = np.flatnonzero(~present)
        assert len(gone) >= 3, (clip.name, gone)
        # a run of at least 3 consecutive frames wholly outside, and back afterwards
        run_ends = np.flatnonzero(np.diff(gone) != 1)
        run_starts = np.concatenate([[0], run_ends + 1])
        run_ends = np.concatenate([run_ends, [len(gone) - 1]])
        longest = int(np.argmax(run_ends - run_starts))
        assert run_ends[longest] - run_starts[longest] + 1 >= 3, (clip.name, gone)
        assert present[gone[run_ends[longest]] + 1 :].any(), (
            f"{clip.name}: {object_id} never returns"
        )


# ----------------------------------------------------------------------------- splits


def test_splits_map_to_disjoint_seed_ranges():
    assert SPLITS == ("train", "val", "test")
    edges = [(split_seed(split, 0), split_seed(split, SPLIT_SEED_RANGE - 1)) for split in SPLITS]
    for (_, last), (first, _) in pairwise(edges):
        assert last < first
    with pytest.raises(ValueError):
        split_seed("train", SPLIT_SEED_RANGE)
    with pytest.raises(ValueError):
        split_seed("train", -1)
    with pytest.raises(ValueError):
        split_seed("holdout", 0)
    train = make_clip(0, split="train", n_frames=2, size_hw=(99, 131))
    test = make_clip(0, split="test", n_frames=2, size_hw=(99, 131))
    assert train.name != test.name
    assert not np.array_equal(train.frames[0], test.frames[0])
    assert split_rng("train", 7).random() == split_rng("train", 7).random()
    assert split_rng("train", 7).random() != split_rng("val", 7).random()


def test_invalid_clip_arguments_raise():
    with pytest.raises(ValueError):
        make_clip(0, n_frames=0)
    with pytest.raises(ValueError):
        make_clip(0, n_objects=0)
    with pytest.raises(ValueError):
        make_clip(0, split="training")


# ----------------------------------------------------------------------------- scenes


def test_scene_labels_match_drawn_regions_and_z_order():
    rng = np.random.default_rng(11)
    for _ in range(10):
        scene = make_scene(rng, (181, 247), int(rng.integers(1, 5)))
        labels, amodal = scene.labels, scene.amodal
        assert scene.image.shape == (181, 247, 3) and scene.image.dtype == np.uint8
        assert labels.shape == (181, 247) and labels.dtype == np.uint8
        for object_id in scene.object_ids:
            visible, full = labels == object_id, amodal[object_id - 1]
            assert visible.any()
            assert not np.any(visible & ~full), "label outside the drawn shape"
            hidden = full & ~visible
            assert np.all((labels[hidden] > object_id) | scene.foreground[hidden])
        uncovered = (labels == 0) & ~scene.foreground
        assert not np.any(amodal[:, uncovered])


def test_compose_labels_exactly_the_painted_pixels_with_later_actors_on_top():
    white = np.full((2, 3), 255.0, dtype=np.float32)
    black = np.zeros((2, 3), dtype=np.float32)
    rng = np.random.default_rng(0)

    def sprite(colors, kind, radius):
        appearance = Appearance(kind, sample_outline(rng, kind), "solid", colors, 0.5, 1)
        return build_sprite(appearance, radius)

    actors = [Actor(sprite(white, "star", 30.0), 1), Actor(sprite(black, "ellipse", 20.0), 2)]
    poses = [Pose(50.3, 40.7, 1.1, 17.0), Pose(70.0, 45.0, 0.9, -30.0)]
    background = np.full((90, 120, 3), 100.0, dtype=np.float32)
    layers = compose((90, 120), actors[:1], poses[:1], np.zeros_like(background), n_labels=2)
    np.testing.assert_array_equal(layers.labels == 1, layers.image[..., 0] >= 127.5)
    both = compose((90, 120), actors, poses, background)
    first_alone = layers.labels == 1
    second = both.labels == 2
    assert np.any(first_alone & second), "the test needs overlapping shapes"
    np.testing.assert_array_equal(both.labels == 1, first_alone & ~second)
    np.testing.assert_array_equal(both.amodal[0], first_alone)
    # black with coverage >= 0.5 over a white or grey background: at most half as bright
    assert np.all(both.image[second] <= 127.5 + 1e-3), "the later actor is painted on top"


def test_training_sample_shapes_ids_and_areas():
    rng = np.random.default_rng(3)
    counts = set()
    for _ in range(20):
        image, labels = make_training_sample(rng)
        assert image.shape == (256, 256, 3) and image.dtype == np.uint8
        assert labels.shape == (256, 256) and labels.dtype == np.uint8
        n_objects = int(labels.max())
        assert 1 <= n_objects <= 4
        counts.add(n_objects)
        areas = np.bincount(labels.ravel(), minlength=n_objects + 1)[1:]
        assert np.all(areas >= TRAIN_MIN_AREA_FRACTION * labels.size)
    assert len(counts) >= 3


def test_training_objects_are_large():
    rng = np.random.default_rng(4)
    radii = []
    for _ in range(20):
        scene = make_scene(rng, (256, 256), 2)
        areas = scene.amodal.reshape(len(scene.object_ids), -1).sum(axis=1)
        radii.extend(np.sqrt(areas / np.pi) / 256)
    # the area-equivalent radius is at most the drawn radius (shapes fit in their disc)
    assert max(radii) <= TRAIN_RADIUS_RANGE[1] + 0.01
    assert np.median(radii) >= 0.12


def test_training_data_is_deterministic():
    a = make_training_pair(np.random.default_rng(9))
    b = make_training_pair(np.random.default_rng(9))
    c = make_training_pair(np.random.default_rng(10))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    s1, s2 = (
        make_training_sample(np.random.default_rng(1)),
        make_training_sample(np.random.default_rng(1)),
    )
    np.testing.assert_array_equal(s1[0], s2[0])
    np.testing.assert_array_equal(s1[1], s2[1])


def test_training_pair_has_consistent_ids_and_moved_objects():
    rng = np.random.default_rng(5)
    moved = 0
    for _ in range(15):
        image_a, labels_a, image_b, labels_b = make_training_pair(rng, (200, 232))
        assert image_a.shape == image_b.shape == (200, 232, 3)
        ids_a, ids_b = set(np.unique(labels_a)) - {0}, set(np.unique(labels_b)) - {0}
        assert ids_a == ids_b == set(range(1, len(ids_a) + 1))
        for object_id in ids_a:
            shift = _centroid(labels_a == object_id) - _centroid(labels_b == object_id)
            moved += np.linalg.norm(shift) > 3.0
        assert np.abs(image_a.astype(int) - image_b).mean() > 1.0
    assert moved >= 10


# ----------------------------------------------------------------------------- appearance


def test_target_colours_differ_and_distractors_copy_them_with_another_look():
    rng = np.random.default_rng(8)
    copies = 0
    for _ in range(50):
        targets = sample_target_appearances(rng, 4)
        primaries = np.stack([target.colors[0] for target in targets])
        distances = np.linalg.norm(primaries[:, None] - primaries[None], axis=-1)
        assert np.all(distances[~np.eye(4, dtype=bool)] > 1.0)
        distractor = sample_distractor_appearance(rng, targets)
        for target in targets:
            if np.array_equal(distractor.colors, target.colors):
                copies += 1
                assert (distractor.shape, distractor.texture) != (target.shape, target.texture)
    assert copies >= 25


def test_every_shape_kind_fits_the_unit_disc():
    rng = np.random.default_rng(0)
    for kind in SHAPE_KINDS:
        outline = sample_outline(rng, kind)
        assert outline.ndim == 2 and outline.shape[1] == 2 and outline.dtype == np.float32
        assert np.isclose(np.linalg.norm(outline, axis=1).max(), 1.0, atol=1e-5)
