"""Tests of the DAVIS measures, statistics and evaluation.

The vectorized code is checked against slow transcriptions of the definitions written here with
plain loops, against hand-computed values, and end to end on tiny DAVIS layouts.
"""

from __future__ import annotations

import csv
import json
import math
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from persam_video.eval.davis_dataset import DavisDataset
from persam_video.eval.evaluate import evaluate_davis, evaluate_sequence
from persam_video.eval.metrics import (
    boundary_map,
    boundary_measure,
    boundary_radius,
    disk_kernel,
    frame_scores,
    region_similarity,
)
from persam_video.eval.report import (
    GLOBAL_COLUMNS,
    PER_OBJECT_COLUMNS,
    decay,
    decay_bin_starts,
    frame_statistics,
    recall,
)
from tests.davis_layout import write_davis, write_labels, write_results

# ---------------------------------------------------------------------------------------------
# Slow reference transcriptions of the definitions (one frame, one object, plain loops).
# ---------------------------------------------------------------------------------------------


def ref_disk_offsets(radius: int) -> list[tuple[int, int]]:
    return [
        (dy, dx)
        for dy in range(-radius, radius + 1)
        for dx in range(-radius, radius + 1)
        if dy * dy + dx * dx <= radius * radius
    ]


def ref_radius(height: int, width: int, bound_th: float) -> int:
    if bound_th >= 1:
        return int(bound_th)
    return math.ceil(bound_th * math.sqrt(height * height + width * width))


def ref_boundary(mask: np.ndarray) -> np.ndarray:
    """Pixel rule: differs from its east, south or south-east neighbour; last row compares east
    only, last column south only, bottom-right corner never."""
    height, width = mask.shape
    out = np.zeros((height, width), dtype=bool)
    for y in range(height):
        for x in range(width):
            last_row, last_col = y == height - 1, x == width - 1
            value = mask[y, x]
            if last_row and last_col:
                out[y, x] = False
            elif last_row:
                out[y, x] = value != mask[y, x + 1]
            elif last_col:
                out[y, x] = value != mask[y + 1, x]
            else:
                out[y, x] = (
                    value != mask[y, x + 1]
                    or value != mask[y + 1, x]
                    or value != mask[y + 1, x + 1]
                )
    return out


def ref_dilate(bound: np.ndarray, radius: int) -> np.ndarray:
    height, width = bound.shape
    out = np.zeros_like(bound)
    for y, x in zip(*np.nonzero(bound), strict=True):
        for dy, dx in ref_disk_offsets(radius):
            if 0 <= y + dy < height and 0 <= x + dx < width:
                out[y + dy, x + dx] = True
    return out


def ref_f(gt, pred, void=None, bound_th=0.008) -> float:
    gt, pred = gt.astype(bool), pred.astype(bool)
    if void is not None:
        gt, pred = gt & ~void, pred & ~void
    radius = ref_radius(*gt.shape, bound_th)
    gt_bound, pred_bound = ref_boundary(gt), ref_boundary(pred)
    n_gt, n_pred = int(gt_bound.sum()), int(pred_bound.sum())
    if n_pred == 0 and n_gt > 0:
        precision, rec = 1.0, 0.0
    elif n_pred > 0 and n_gt == 0:
        precision, rec = 0.0, 1.0
    elif n_pred == 0 and n_gt == 0:
        precision, rec = 1.0, 1.0
    else:
        precision = int((pred_bound & ref_dilate(gt_bound, radius)).sum()) / n_pred
        rec = int((gt_bound & ref_dilate(pred_bound, radius)).sum()) / n_gt
    if precision + rec == 0:
        return 0.0
    return 2 * precision * rec / (precision + rec)


def ref_j(gt, pred, void=None) -> float:
    inter = union = 0
    for y in range(gt.shape[0]):
        for x in range(gt.shape[1]):
            if void is not None and void[y, x]:
                continue
            inter += bool(gt[y, x]) and bool(pred[y, x])
            union += bool(gt[y, x]) or bool(pred[y, x])
    return 1.0 if union == 0 else inter / union


def ref_statistics(values) -> tuple[float, float, float]:
    values = [float(v) for v in values]
    n = len(values)
    mean = sum(values) / n
    rec = sum(1 for v in values if v > 0.5) / n
    # Bin starts: round(1 + i (n - 1) / 4) - 1 with halves rounded up, exact fractions.
    starts = [math.floor(1 + Fraction(i * (n - 1), 4) + Fraction(1, 2)) - 1 for i in range(5)]
    first = values[starts[0] : starts[1] + 1]
    last = values[starts[3] : starts[4] + 1]
    return mean, rec, sum(first) / len(first) - sum(last) / len(last)


def check_against_reference(gt, pred, void=None, bound_th=0.008):
    """Vectorized J and F of (T, H, W) stacks equal the per-frame references."""
    j = region_similarity(gt, pred, void)
    f = boundary_measure(gt, pred, void, bound_th)
    frames = range(len(gt))
    v = [None] * len(gt) if void is None else void
    np.testing.assert_allclose(j, [ref_j(gt[t], pred[t], v[t]) for t in frames], rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        f, [ref_f(gt[t], pred[t], v[t], bound_th) for t in frames], rtol=0, atol=1e-6
    )
    both_j, both_f = frame_scores(gt, pred, void, bound_th)
    np.testing.assert_array_equal(both_j, j)
    np.testing.assert_array_equal(both_f, f)
    for t in frames:
        np.testing.assert_array_equal(boundary_map(gt[t]), ref_boundary(gt[t].astype(bool)))


# ---------------------------------------------------------------------------------------------
# Mask generators.
# ---------------------------------------------------------------------------------------------


def ellipse(size, center, axes) -> np.ndarray:
    yy, xx = np.mgrid[: size[0], : size[1]]
    return ((yy - center[0]) / axes[0]) ** 2 + ((xx - center[1]) / axes[1]) ** 2 <= 1


def rectangle(size, top, left, bottom, right) -> np.ndarray:
    mask = np.zeros(size, dtype=bool)
    mask[max(top, 0) : max(bottom, 0), max(left, 0) : max(right, 0)] = True
    return mask


# ---------------------------------------------------------------------------------------------
# Vectorized measures against the references.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape", [(3, 1, 1), (3, 1, 9), (3, 9, 1), (2, 2, 2), (4, 13, 17), (3, 24, 40), (2, 37, 23)]
)
@pytest.mark.parametrize("bound_th", [0.008, 0.1, 0, 2])
def test_random_masks_match_reference(shape, bound_th):
    rng = np.random.default_rng(hash((shape, bound_th)) % 2**32)
    gt = rng.random(shape) < rng.uniform(0.1, 0.9)
    pred = rng.random(shape) < rng.uniform(0.1, 0.9)
    gt[0] = False  # an empty ground-truth frame
    pred[-1] = False  # an empty predicted frame
    void = rng.random(shape) < 0.1
    check_against_reference(gt, pred, None, bound_th)
    check_against_reference(gt, pred, void, bound_th)


def test_moving_shapes_match_reference():
    size = (40, 90)  # not square; radius 4 with bound_th=0.04
    gt, pred = [], []
    for t in range(6):
        gt.append(ellipse(size, (20 + 2 * t, 10 + 12 * t), (9, 14)))  # leaves through the right
        pred.append(ellipse(size, (21 + 2 * t, 12 + 12 * t), (8, 15)) | rectangle(size, 0, 0, 3, 5))
    gt, pred = np.array(gt), np.array(pred)
    gt[2] = False  # ground truth empty, prediction not
    pred[3] = False  # prediction empty, ground truth not
    gt[4] = pred[4] = False  # both empty
    pred[5] = gt[5]  # identical
    for bound_th in (0.008, 0.04, 6):
        check_against_reference(gt, pred, None, bound_th)


def test_shapes_touching_borders_match_reference():
    size = (30, 45)
    gt = np.array(
        [
            rectangle(size, -5, -5, 10, 20),  # top-left corner
            rectangle(size, 20, 30, 40, 60),  # bottom-right corner
            rectangle(size, 0, 0, 30, 45),  # whole image
            ellipse(size, (29, 22), (6, 30)),  # along the bottom edge
        ]
    )
    pred = np.array(
        [
            rectangle(size, -5, -3, 12, 18),
            rectangle(size, 18, 33, 40, 60),
            rectangle(size, 0, 0, 30, 40),
            ellipse(size, (28, 20), (5, 28)),
        ]
    )
    for bound_th in (0.008, 0.1, 3):
        check_against_reference(gt, pred, None, bound_th)


def test_void_regions_match_reference():
    size = (32, 48)
    gt = np.array([ellipse(size, (16, 20), (10, 12)), rectangle(size, 4, 4, 20, 40)])
    pred = np.array([ellipse(size, (17, 24), (10, 12)), rectangle(size, 6, 2, 24, 44)])
    void = np.array([rectangle(size, 10, 18, 22, 30), rectangle(size, 0, 0, 32, 8)])
    for bound_th in (0.008, 0.1):
        check_against_reference(gt, pred, void, bound_th)


def test_two_dimensional_input_gives_scalar():
    gt = ellipse((20, 30), (10, 12), (5, 7))
    pred = ellipse((20, 30), (11, 13), (5, 7))
    assert region_similarity(gt, pred).shape == ()
    assert float(boundary_measure(gt, pred, bound_th=2)) == pytest.approx(ref_f(gt, pred, None, 2))


# ---------------------------------------------------------------------------------------------
# Known values.
# ---------------------------------------------------------------------------------------------


def test_identical_and_disjoint_masks():
    size = (48, 64)
    gt = ellipse(size, (20, 20), (8, 10))[None]
    far = ellipse(size, (30, 50), (5, 6))[None]
    assert region_similarity(gt, gt)[0] == 1.0
    assert boundary_measure(gt, gt)[0] == 1.0
    assert region_similarity(gt, far)[0] == 0.0
    assert boundary_measure(gt, far)[0] == 0.0


def test_empty_masks():
    empty = np.zeros((1, 10, 12), dtype=bool)
    blob = rectangle((10, 12), 2, 2, 6, 7)[None]
    assert region_similarity(empty, empty)[0] == 1.0
    assert boundary_measure(empty, empty)[0] == 1.0
    assert region_similarity(blob, empty)[0] == 0.0
    assert boundary_measure(blob, empty)[0] == 0.0  # precision 1, recall 0
    assert boundary_measure(empty, blob)[0] == 0.0  # precision 0, recall 1


def test_jaccard_hand_computed_with_void():
    gt = rectangle((4, 6), 0, 0, 2, 4)  # 8 pixels
    pred = rectangle((4, 6), 0, 2, 2, 6)  # 8 pixels, 4 shared
    assert region_similarity(gt, pred) == pytest.approx(4 / 12)
    void = rectangle((4, 6), 0, 4, 4, 6)  # hides 4 predicted pixels
    assert region_similarity(gt, pred, void) == pytest.approx(4 / 8)
    assert region_similarity(gt, gt | void, void) == 1.0


def test_boundary_map_of_one_pixel_is_shifted_towards_the_origin():
    mask = np.zeros((6, 6), dtype=bool)
    mask[2, 2] = True
    expected = np.zeros((6, 6), dtype=bool)
    expected[1:3, 1:3] = True
    np.testing.assert_array_equal(boundary_map(mask), expected)


def test_boundary_map_ignores_the_image_border():
    # A mask covering the image has no boundary; a left half only its inner edge.
    assert not boundary_map(np.ones((5, 7), dtype=bool)).any()
    half = rectangle((5, 7), 0, 0, 5, 3)
    expected = np.zeros((5, 7), dtype=bool)
    expected[:, 2] = True
    np.testing.assert_array_equal(boundary_map(half), expected)


def test_f_one_row_hand_computed():
    # Boundaries of a row: x where mask[x] != mask[x + 1]; gt {1, 4}, pred {3, 6}.
    gt = np.array([[0, 0, 1, 1, 1, 0, 0, 0, 0, 0]], dtype=bool)
    pred = np.array([[0, 0, 0, 0, 1, 1, 1, 0, 0, 0]], dtype=bool)
    assert boundary_measure(gt, pred, bound_th=1) == pytest.approx(0.5)  # 3 and 4 matched
    assert boundary_measure(gt, pred, bound_th=2) == pytest.approx(1.0)
    assert boundary_measure(gt, pred, bound_th=0) == pytest.approx(0.0)


def test_f_uses_a_disk_not_a_square():
    # Boundaries of single pixels are 2x2 blocks; (2,2) vs (4,4): with a disk of radius 2 only
    # the nearest corners (1 diagonal step apart) match, a 5x5 square would match all.
    gt = np.zeros((6, 6), dtype=bool)
    gt[2, 2] = True
    side = np.zeros_like(gt)
    side[2, 4] = True
    diagonal = np.zeros_like(gt)
    diagonal[4, 4] = True
    assert boundary_measure(gt, side, bound_th=1) == pytest.approx(0.5)
    assert boundary_measure(gt, side, bound_th=2) == pytest.approx(1.0)
    assert boundary_measure(gt, diagonal, bound_th=1) == pytest.approx(0.0)
    assert boundary_measure(gt, diagonal, bound_th=2) == pytest.approx(0.25)


def test_boundary_radius():
    assert boundary_radius((480, 854)) == 8  # DAVIS 480p: ceil(0.008 * 979.6)
    assert boundary_radius((1080, 1920)) == 18
    assert boundary_radius((6, 6)) == 1
    assert boundary_radius((480, 854), 3) == 3
    assert boundary_radius((480, 854), 0) == 0
    with pytest.raises(ValueError, match="whole number"):
        boundary_radius((480, 854), 2.5)
    with pytest.raises(ValueError, match=">= 0"):
        boundary_radius((480, 854), -0.1)


def test_disk_kernel():
    np.testing.assert_array_equal(disk_kernel(0), [[1]])
    np.testing.assert_array_equal(disk_kernel(1), [[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    assert disk_kernel(2).sum() == 13
    for radius in range(9):
        kernel = disk_kernel(radius)
        assert kernel.shape == (2 * radius + 1, 2 * radius + 1)
        offsets = {(dy - radius, dx - radius) for dy, dx in zip(*np.nonzero(kernel), strict=True)}
        assert offsets == set(ref_disk_offsets(radius))


def test_disk_kernel_equals_skimage_disk():
    morphology = pytest.importorskip("skimage.morphology")
    for radius in range(16):
        np.testing.assert_array_equal(disk_kernel(radius), morphology.disk(radius))


def test_measure_input_errors():
    with pytest.raises(ValueError, match="does not match prediction shape"):
        region_similarity(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="void shape"):
        boundary_measure(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"\(\.\.\., H, W\)"):
        region_similarity(np.zeros(3), np.zeros(3))


# ---------------------------------------------------------------------------------------------
# Statistics.
# ---------------------------------------------------------------------------------------------


def test_statistics_hand_built():
    # Bins of 5 values start at 0, 1, 2, 3 (4 is the end): first [1, .8], last [.4, .2].
    stats = frame_statistics([1.0, 0.8, 0.6, 0.4, 0.2])
    assert stats.mean == pytest.approx(0.6)
    assert stats.recall == pytest.approx(0.6)
    assert stats.decay == pytest.approx(0.9 - 0.3)
    # 10 values: bins [0..2], [2..5], [5..7], [7..9].
    assert decay_bin_starts(10) == [0, 2, 5, 7, 9]
    assert decay([1, 1, 1, 0, 0, 0, 0, 0, 0, 0]) == pytest.approx(1.0)
    assert decay([1, 1, 1, 0, 0, 0, 0, 0.5, 0.5, 0.5]) == pytest.approx(1.0 - 0.5)
    assert decay([1, 1, 0, 0, 0, 0, 0, 0.5, 0.5, 0.5]) == pytest.approx(2 / 3 - 0.5)
    assert decay([0.3] * 7) == pytest.approx(0.0)
    assert decay_bin_starts(1) == [0, 0, 0, 0, 0]
    assert decay([0.7]) == 0.0
    assert decay_bin_starts(2) == [0, 0, 1, 1, 1]
    assert decay([1.0, 0.25]) == pytest.approx(0.75)


def test_recall_is_strictly_above_one_half():
    assert recall([0.5, 0.5000001, 0.2, 1.0]) == 0.5
    assert recall([0.5]) == 0.0


def test_statistics_match_reference():
    rng = np.random.default_rng(5)
    for n in [*range(1, 40), 69, 100, 101, 102, 255, 300]:
        values = rng.random(n)
        values[rng.random(n) < 0.2] = 0.5
        stats = frame_statistics(values)
        np.testing.assert_allclose(stats, ref_statistics(values), rtol=0, atol=1e-12)


def test_statistics_errors():
    with pytest.raises(ValueError, match="non-empty"):
        frame_statistics([])
    with pytest.raises(ValueError, match="NaN"):
        frame_statistics([0.1, float("nan")])


# ---------------------------------------------------------------------------------------------
# Sequence evaluation.
# ---------------------------------------------------------------------------------------------


def _two_objects(n_frames=5, size=(20, 30)) -> np.ndarray:
    labels = np.zeros((n_frames, *size), dtype=np.uint8)
    for t in range(n_frames):
        labels[t][ellipse(size, (8, 6 + 2 * t), (4, 5))] = 1
        labels[t][rectangle(size, 12, 14, 18, 26)] = 2
    return labels


def test_first_and_last_frames_are_not_evaluated():
    gt = _two_objects()
    pred = gt.copy()
    pred[0] = 0
    pred[-1] = 7  # unknown ids in frames that are not read
    result = evaluate_sequence(gt, pred, [1, 2])
    assert result.object_ids == (1, 2)
    assert result.j.shape == result.f.shape == (2, 3)
    assert (result.j == 1).all() and (result.f == 1).all()


def test_sequence_scores_per_object():
    gt = _two_objects()
    pred = gt.copy()
    pred[2][pred[2] == 2] = 0  # object 2 missing in frame 2
    pred[3] = np.where(gt[3] == 1, 0, gt[3])  # object 1 missing in frame 3
    result = evaluate_sequence(gt, pred, [1, 2])
    np.testing.assert_array_equal(result.j, [[1, 1, 0], [1, 0, 1]])
    np.testing.assert_array_equal(result.f, [[1, 1, 0], [1, 0, 1]])
    for row, object_id in enumerate((1, 2)):
        np.testing.assert_array_equal(
            result.j[row], region_similarity(gt[1:-1] == object_id, pred[1:-1] == object_id)
        )


def test_void_is_background_unless_ignored():
    gt = _two_objects()
    gt[:, :, :3] = 255
    pred = gt.copy()
    pred[pred == 255] = 1  # the prediction claims the void band for object 1
    official = evaluate_sequence(gt, np.where(pred == 255, 0, pred), [1, 2])
    assert (official.j[0] < 1).all()
    ignored = evaluate_sequence(gt, np.where(pred == 255, 0, pred), [1, 2], ignore_void=True)
    np.testing.assert_array_equal(ignored.j, 1.0)


def test_sequence_errors():
    gt = _two_objects()
    pred = gt.copy()
    pred[2, 0, 0] = 3
    with pytest.raises(ValueError, match="frame 2 holds label 3"):
        evaluate_sequence(gt, pred, [1, 2])
    with pytest.raises(ValueError, match="at least 3 frames"):
        evaluate_sequence(gt[:2], gt[:2], [1])
    with pytest.raises(ValueError, match=r"object ids must be in 1\.\.254"):
        evaluate_sequence(gt, gt, [0, 1])
    with pytest.raises(ValueError, match="unique"):
        evaluate_sequence(gt, gt, [1, 1])
    with pytest.raises(ValueError, match="one shape"):
        evaluate_sequence(gt, gt[:, :5], [1])
    with pytest.raises(ValueError, match="integer"):
        evaluate_sequence(gt, gt.astype(float), [1])


# ---------------------------------------------------------------------------------------------
# DAVIS evaluation end to end.
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def davis(tmp_path):
    sequences = {"alpha": _two_objects(5), "beta": _two_objects(4, (16, 24))[:, :, ::-1]}
    write_davis(tmp_path / "DAVIS", sequences)
    return DavisDataset(tmp_path / "DAVIS"), sequences, tmp_path / "results"


def test_perfect_results(davis):
    dataset, sequences, results = davis
    write_results(results, sequences)
    report = evaluate_davis(dataset, results, progress=False)
    assert [obj.name for obj in report.objects] == ["alpha_1", "alpha_2", "beta_1", "beta_2"]
    assert list(report.global_metrics) == list(GLOBAL_COLUMNS)
    assert report.global_metrics == {
        "J&F-Mean": 1.0,
        "J-Mean": 1.0,
        "J-Recall": 1.0,
        "J-Decay": 0.0,
        "F-Mean": 1.0,
        "F-Recall": 1.0,
        "F-Decay": 0.0,
    }
    assert report.objects[2].j_frames.shape == (2,)


def test_known_global_values(davis):
    dataset, sequences, results = davis
    pred = {name: labels.copy() for name, labels in sequences.items()}
    pred["alpha"][3][pred["alpha"][3] == 2] = 0  # alpha_2: J, F = [1, 1, 0]
    pred["beta"][1:3][pred["beta"][1:3] == 1] = 0  # beta_1: J, F = [0, 0]
    write_results(results, pred)
    report = evaluate_davis(dataset, results, progress=False)
    # alpha_2: mean 2/3, recall 2/3, decay 1 (bins [0..1] and [2..2]); beta_1: 0, 0, 0.
    j_mean = (1 + 2 / 3 + 0 + 1) / 4
    expected = {
        "J-Mean": j_mean,
        "J-Recall": j_mean,
        "J-Decay": (0 + 1 + 0 + 0) / 4,
    }
    metrics = report.global_metrics
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value)
        assert metrics[key.replace("J", "F")] == pytest.approx(value)
    assert metrics["J&F-Mean"] == pytest.approx(j_mean)
    assert report.jf_mean == metrics["J&F-Mean"]
    assert report.per_object_rows[1] == ("alpha_2", pytest.approx(2 / 3), pytest.approx(2 / 3))


def test_first_and_last_result_frames_may_be_absent(davis):
    dataset, sequences, results = davis
    for name, labels in sequences.items():
        write_results(results, {name: labels}, range(1, len(labels) - 1))
    assert evaluate_davis(dataset, results, progress=False).jf_mean == 1.0


def test_missing_result_frame(davis):
    dataset, sequences, results = davis
    write_results(results, sequences)
    (results / "beta" / "00002.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"beta/00002\.png: prediction not found"):
        evaluate_davis(dataset, results, progress=False)


def test_missing_results_folder(davis):
    dataset, _, results = davis
    with pytest.raises(FileNotFoundError, match="results folder not found"):
        evaluate_davis(dataset, results, progress=False)


@pytest.mark.parametrize("bad_id", [3, 255])
def test_result_with_unknown_object_id(davis, bad_id):
    dataset, sequences, results = davis
    write_results(results, sequences)
    frame = sequences["alpha"][2].copy()
    frame[0, 0] = bad_id
    write_labels(frame, results / "alpha" / "00002.png")
    with pytest.raises(ValueError, match=rf"alpha/00002\.png: prediction holds object id {bad_id}"):
        evaluate_davis(dataset, results, progress=False)


def test_result_of_wrong_size_or_colour(davis):
    dataset, sequences, results = davis
    write_results(results, sequences)
    write_labels(np.zeros((3, 3), np.uint8), results / "alpha" / "00001.png")
    with pytest.raises(ValueError, match=r"alpha/00001\.png: prediction is \(3, 3\)"):
        evaluate_davis(dataset, results, progress=False)
    Image.new("RGB", (30, 20)).save(results / "alpha" / "00001.png")
    with pytest.raises(ValueError, match="mode 'RGB'"):
        evaluate_davis(dataset, results, progress=False)


def test_year_2016_binarizes_ground_truth_and_results(tmp_path):
    gt = _two_objects()
    root = write_davis(tmp_path / "DAVIS", {"alpha": gt}, year=2016)
    pred = np.where(gt > 0, 255, 0).astype(np.uint8)  # binary 0/255 results, as DAVIS 2016 had
    results = write_results(tmp_path / "results", {"alpha": pred})
    report = evaluate_davis(DavisDataset(root, year=2016), results, progress=False)
    assert [obj.name for obj in report.objects] == ["alpha_1"]
    assert report.jf_mean == 1.0
    assert report.year == 2016


def test_report_files(davis, tmp_path):
    dataset, sequences, results = davis
    pred = {name: labels.copy() for name, labels in sequences.items()}
    pred["alpha"][2][pred["alpha"][2] == 1] = 0
    write_results(results, pred)
    report = evaluate_davis(dataset, results, progress=False)

    per_object_path = report.to_csv(tmp_path / "global.csv")
    assert per_object_path == tmp_path / "global_per-object.csv"
    with open(tmp_path / "global.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == list(GLOBAL_COLUMNS)
    assert rows[1] == [f"{value:.3f}" for value in report.global_metrics.values()]
    with open(per_object_path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == list(PER_OBJECT_COLUMNS)
    assert rows[1] == ["alpha_1", f"{2 / 3:.3f}", f"{2 / 3:.3f}"]
    assert len(rows) == 5
    report.to_csv(tmp_path / "g.csv", tmp_path / "objects.csv")
    assert (tmp_path / "objects.csv").read_text().startswith("Sequence,J-Mean,F-Mean\n")

    report.to_json(tmp_path / "report.json")
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["dataset"] == {"name": "DAVIS", "year": 2017, "subset": "val"}
    assert data["global"] == report.global_metrics
    first = data["per_object"][0]
    assert first["name"] == "alpha_1"
    assert first["J-Mean"] == pytest.approx(2 / 3)
    assert first["J-frames"] == [1.0, 0.0, 1.0]
    assert set(first) >= {"J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay", "F-frames"}

    table = report.format_table()
    assert "DAVIS 2017 val: 4 objects in 2 sequences" in table
    assert "J&F-Mean" in table and "alpha_1" in table and "beta_2" in table
    assert f"{report.jf_mean:.3f}" in table
