"""Issue 12 section 3's mechanisms on constructed inputs: the temporal prior (affinity
propagation), distractor-aware negatives, the search window, the jump guard, detached parts,
absence with hysteresis and re-entry at the border (alone and in the tracker)."""

from __future__ import annotations

import dataclasses
import importlib

import numpy as np
import pytest
import torch

from persam_video.apps.track import frame_record
from persam_video.config import ConfigError, PerSAMConfig
from persam_video.persam.cascade import ExtraPrompt, Prediction, segment_objects
from persam_video.persam.components import grow_region
from persam_video.persam.features import FrameFeatures
from persam_video.persam.geometry import mask_iou, mask_to_low_res
from persam_video.persam.prior import (
    distractor_points,
    grid_region,
    search_windows,
    select_points,
)
from persam_video.video import guards
from persam_video.video.affinity import affinity_weights, propagate_logits
from persam_video.video.guards import detached_components, drop_detached, guard_jumps
from persam_video.video.rules import Hysteresis, at_border, hysteresis_step
from persam_video.video.tracker import VideoTracker
from tests.helpers import ellipse_mask, encode_image, random_image


# --------------------------------------------------------------------------- a. temporal prior
def _shifted(features: torch.Tensor, dy: int, dx: int, generator: torch.Generator) -> torch.Tensor:
    """(C, h, w) features moved by (dy, dx) cells; the uncovered cells get new random ones."""
    moved = torch.randn(features.shape, generator=generator)
    h, w = features.shape[-2:]
    src = features[:, max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
    moved[:, max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)] = src
    return moved


@pytest.mark.parametrize("dy, dx", [(1, -2), (0, 3), (-2, 0)])
def test_affinity_propagation_moves_a_mask_by_a_known_shift(dy, dx):
    g = torch.Generator().manual_seed(0)
    previous = torch.randn(32, 12, 12, generator=g)
    current = _shifted(previous, dy, dx, g)
    logits = torch.full((1, 48, 48), -8.0)
    logits[0, 16:28, 12:32] = 8.0  # a 12 x 20 low-res box, well inside
    carried = propagate_logits(previous, current, logits, radius=3, temperature=0.02)
    expected = torch.roll(logits, shifts=(4 * dy, 4 * dx), dims=(1, 2))
    assert carried.shape == logits.shape
    # Compared where the current frame's cells came from the previous frame (the uncovered
    # cells hold new content, matched to whatever is most alike).
    covered = torch.zeros(12, 12, dtype=torch.bool)
    covered[max(0, dy) : 12 + min(0, dy), max(0, dx) : 12 + min(0, dx)] = True
    covered = covered.repeat_interleave(4, 0).repeat_interleave(4, 1)
    assert torch.equal((carried[0] > 0)[covered], (expected[0] > 0)[covered])
    assert (carried[0] > 0)[covered].sum() == (logits > 0).sum()  # all of the mask arrived
    # Without motion the mask stays where it was.
    still = propagate_logits(previous, previous, logits, radius=3, temperature=0.02)
    assert torch.equal(still > 0, logits > 0)


def test_affinity_weights_sum_to_one_and_never_leave_the_grid():
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(8, 5, 6, generator=g)
    weights = affinity_weights(feats, feats, radius=2, temperature=0.1)
    assert weights.shape == (25, 5, 6)
    assert torch.allclose(weights.sum(0), torch.ones(5, 6))
    # Offset (-2, -2) (index 0) points outside the grid from the top-left cell.
    assert weights[0, 0, 0] == 0 and weights[0, 4, 5] > 0


def _features(grid: int = 16, size: int = 64) -> FrameFeatures:
    return FrameFeatures(torch.zeros(1, 4, grid, grid), (size, size), (size, size), size)


def test_a_binary_mask_becomes_low_res_logits_of_its_sign():
    feats = _features()
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[8:24, 32:56] = True
    low = mask_to_low_res(feats, mask, (64, 64))
    assert low.shape == (1, 64, 64)
    assert torch.equal(low[0] > 0, mask)


# --------------------------------------------------------------------------- b. mask overlap
def _box(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_mask_iou_of_several_masks_against_a_reference():
    """What the jump guard compares: (M, h, w) masks against one (h, w) reference."""
    reference = _box(20, 20, 2, 8, 2, 8)  # 36 pixels
    shifted, apart = _box(20, 20, 2, 8, 5, 11), _box(20, 20, 10, 18, 10, 18)
    masks = torch.stack([reference, shifted, apart, _box(20, 20, 0, 0, 0, 0)])
    iou = mask_iou(masks, reference)
    assert iou.tolist() == pytest.approx([1.0, 18 / 54, 0.0, 0.0])
    empty = torch.zeros(20, 20, dtype=torch.bool)
    assert mask_iou(empty[None], empty).tolist() == [0.0]  # both empty: 0, not NaN


# --------------------------------------------------------------------------- c. negatives
def _square(low: int, top: int, left: int, side: int = 16) -> torch.Tensor:
    logits = torch.full((1, low, low), -8.0)
    logits[0, top : top + side, left : left + side] = 8.0
    return logits


@pytest.mark.parametrize("still_there", [True, False])
def test_the_jump_guard_keeps_an_object_that_is_still_where_it_was_expected(
    tiny_sam, monkeypatch, still_there
):
    """Object 0's mask jumped away from its expected region (IoU 0): SAM decodes it again
    from its temporal prompts alone (no points, its box, the expected logits as mask prompt);
    where that reproduces the expected region the jump is undone, where it does not (the
    object is gone) the jump stands. Object 1 did not jump and is not decoded again."""
    import persam_video.persam.cascade as cascade

    feats = FrameFeatures(torch.zeros(1, 4, 16, 16), (64, 64), (64, 64), 64)
    jumped, expected, steady = _square(64, 0, 0), _square(64, 40, 40), _square(64, 20, 20)
    low_res = torch.stack([jumped, steady])
    extra = [
        ExtraPrompt(box=(40.0, 40.0, 56.0, 56.0), expected=expected, mask_prompt=expected),
        ExtraPrompt(box=(20.0, 20.0, 36.0, 36.0), expected=steady, mask_prompt=steady),
    ]
    calls = []

    def fake_decode(sam, feats, points, labels, *, boxes=None, mask_inputs=None, **kwargs):
        calls.append((points.shape, boxes, mask_inputs, kwargs))
        again = expected if still_there else _square(64, 0, 60, side=2)
        return again.expand(1, 4, 64, 64).clone(), torch.full((1, 4), 0.7)

    monkeypatch.setattr(cascade, "decode", fake_decode)
    undone, stands = guard_jumps(tiny_sam, feats, low_res, extra, threshold=0.3)
    assert stands == (set() if still_there else {0})
    assert len(calls) == 1
    shape, boxes, mask_inputs, kwargs = calls[0]
    assert shape == (1, 0, 2) and boxes.tolist() == [[40.0, 40.0, 56.0, 56.0]]
    assert torch.equal(mask_inputs, expected[None]) and not kwargs  # no guidance either
    assert 1 not in undone  # object 1 keeps its logits and score
    if still_there:
        logits, score = undone[0]
        assert torch.equal(logits, expected)
        assert score == pytest.approx(0.7)
    else:
        assert not undone  # object 0 keeps its logits and score
    # A broken track (the tracker's ``steady`` off) is not guarded: its jump stands as is.
    calls.clear()
    unguarded = [dataclasses.replace(extra[0], guard=False), extra[1]]
    undone, stands = guard_jumps(tiny_sam, feats, low_res, unguarded, threshold=0.3)
    assert not calls and stands == {0} and not undone


def test_detached_components_are_the_pieces_away_from_the_expected_region():
    """Three pieces: A overlaps the expected region, B lies 2 cells from it, C far away."""
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[4:10, 4:10] = True  # A
    mask[4:10, 13:17] = True  # B: columns 13-16, the region ends at column 11
    mask[24:30, 24:30] = True  # C
    region = torch.zeros(32, 32, dtype=torch.bool)
    region[2:10, 2:12] = True
    a, b, c = (torch.zeros_like(mask) for _ in range(3))
    a[4:10, 4:10], b[4:10, 13:17], c[24:30, 24:30] = True, True, True
    assert torch.equal(detached_components(mask, region, 0), b | c)
    assert torch.equal(detached_components(mask, region, 2), c)
    # One piece, or none near the region (the whole mask moved): nothing is dropped.
    assert not detached_components(a, region, 0).any()
    assert not detached_components(c, region, 0).any()
    assert not detached_components(b | c, region, 0).any()
    assert torch.equal(grow_region(region, 0), region)
    assert grow_region(region, 1)[1, 1] and not grow_region(region, 1)[0, 0]


def test_the_video_rules_drop_the_detached_piece_of_a_mask(tiny_sam):
    """A final mask of two pieces, one where the object was expected: the other's logits are
    pushed below the threshold, so neither the low-resolution nor the frame mask keeps it; an
    object without an expected region is left alone."""
    feats = FrameFeatures(torch.zeros(1, 4, 16, 16), (64, 64), (64, 64), 64)
    two = torch.maximum(_square(64, 0, 0), _square(64, 40, 40))
    extra = [ExtraPrompt(expected=_square(64, 2, 2)), ExtraPrompt()]
    dropped = drop_detached(tiny_sam, feats, torch.stack([two, two]), extra, margin=2)
    assert list(dropped) == [0]  # object 1 keeps its logits
    assert torch.equal(dropped[0] > 0, _square(64, 0, 0) > 0)
    assert float(dropped[0].max()) == 8.0 and float(dropped[0][0, 48, 48]) <= -10.0
    # Through the predictions: the frame mask is recomputed, the score and the others kept.
    preds = [_scripted(torch.zeros(64, 64, dtype=torch.bool), s) for s in (0.9, 0.8)]
    preds = [dataclasses.replace(p, low_res_logits=two) for p in preds]
    config = PerSAMConfig().with_overrides(["decode.jump_iou=0", "decode.detached_margin=2"])
    kept = guards.guard_predictions(tiny_sam, feats, preds, extra, config)
    assert torch.equal(kept[0].low_res_logits, dropped[0])
    assert torch.equal(kept[1].low_res_logits, two) and kept[1].mask[:16, :16].all()
    assert kept[0].score == 0.9 and kept[1].score == 0.8 and not kept[0].jumped
    assert kept[0].mask[:16, :16].all() and not kept[0].mask[40:, 40:].any()
    assert torch.equal(kept[0].mask, kept[0].mask_logits > tiny_sam.mask_threshold)


def test_the_jump_guard_decodes_again_on_the_cascades_working_grid(tiny_sam, rng, monkeypatch):
    """With ``decode.work_size``, the jump guard decodes again on the grid the cascade decoded
    on (the box scaled into it as :func:`segment_objects` scales it); the undone jump's mask
    comes back at the frame's size, and a jump that stands is marked, nothing else of it
    changed."""
    import persam_video.persam.cascade as cascade

    feats = encode_image(tiny_sam, random_image(rng, 96, 160))  # 32 x 32 low-res, 20 rows inside
    expected, jumped = _square(32, 2, 2, side=6), _square(32, 10, 20, side=6)
    calls = []

    def fake_decode(sam, grid, points, labels, *, boxes=None, mask_inputs=None, **kwargs):
        calls.append((grid.original_size, boxes.tolist()))
        return expected.expand(1, 4, 32, 32).clone(), torch.full((1, 4), 0.7)

    monkeypatch.setattr(cascade, "decode", fake_decode)
    box = (10.0, 10.0, 30.0, 30.0)
    extra = [ExtraPrompt(box=box, expected=expected), ExtraPrompt(box=box, expected=expected)]
    extra[1] = dataclasses.replace(extra[1], guard=False)
    preds = [_scripted(torch.zeros(96, 160, dtype=torch.bool), s) for s in (0.9, 0.8)]
    preds = [dataclasses.replace(p, low_res_logits=jumped) for p in preds]
    overrides = ["decode.work_size=80", "decode.jump_iou=0.5", "decode.drop_detached=false"]
    config = PerSAMConfig().with_overrides(overrides)
    guarded = guards.guard_predictions(tiny_sam, feats, preds, extra, config)
    assert calls == [((48, 80), [[5.0, 5.0, 15.0, 15.0]])]
    undone, stands = guarded
    assert torch.equal(undone.low_res_logits, expected) and undone.score == pytest.approx(0.7)
    assert undone.mask_logits.shape == (96, 160) and undone.mask.any() and not undone.jumped
    where = cascade.working_resolution(feats, config)
    assert where.scaled and where.work.original_size == (48, 80)
    assert torch.equal(undone.mask_logits, where.frame_logits(tiny_sam, expected[None])[0])
    assert stands.jumped and torch.equal(stands.low_res_logits, jumped) and stands.score == 0.8


def test_the_tracker_guards_only_an_unbroken_track(tiny_sam, monkeypatch):
    """The tracker lets the jump guard act while the object's track is unbroken: a jump that
    stands (frame 2) or a frame the object is not found on breaks it, and a new annotation
    mends it."""
    rng = np.random.default_rng(0)
    frames = [random_image(rng, 64, 80) for _ in range(5)]
    first = ellipse_mask(64, 80, 30, 40, 12, 15).astype(np.uint8)
    truth = torch.from_numpy(ellipse_mask(64, 80, 32, 42, 12, 15))
    jumps, scores = [False, True, False, False], [0.9] * 4
    calls = []

    def fake(feats, targets, extra):
        calls.append(extra[0])
        pred = _scripted(truth, scores[len(calls) - 1])
        pred.jumped = jumps[len(calls) - 1]
        return [pred]

    tracker = VideoTracker(tiny_sam, PerSAMConfig().with_overrides(["decode.jump_iou=0.3"]))
    _script_decoding(tracker, monkeypatch, fake)
    results = list(tracker.track(frames, first))
    assert all(r.objects[0].present for r in results)
    assert [e.guard for e in calls] == [True, True, False, False]
    # Not found on frame 2 (absent there), found again after: no guard from then on.
    jumps, scores = [False] * 4, [0.9, 0.05, 0.9, 0.9]
    calls.clear()
    results = list(tracker.track(frames, first))
    assert [r.objects[0].present for r in results] == [True, True, False, True, True]
    assert [e.guard for e in calls if e.box is not None] == [True, True, False]
    state, _ = tracker.start(frames[0], first)
    state.objects[0].steady = False
    tracker.step_features(
        state, encode_image(tiny_sam, frames[1]), frames[1], index=1, annotations={1: first > 0}
    )
    assert state.objects[0].steady


def test_distractor_negatives_land_on_a_planted_distractor():
    feats = _features()
    sim = torch.full((16, 16), 0.1)
    sim += 0.01 * torch.rand(16, 16, generator=torch.Generator().manual_seed(0))
    sim[3, 3] = 1.0  # the object
    sim[9, 10] = 0.9  # the planted distractor
    sim[13, 2] = 0.5  # similar, but below the ratio
    previous = torch.full((64, 64), -5.0)
    previous[12:16, 12:16] = 5.0  # the object's previous mask: cell (3, 3)
    excluded = grid_region(feats, previous, 0.0, margin=1)
    assert excluded[2:5, 2:5].all() and excluded.sum() == 9
    points = distractor_points(feats, sim, excluded, count=2, ratio=0.8)
    # Cell (row 9, col 10) of 4-pixel cells: centre x = 42, y = 38.
    assert points.tolist() == [[42.0, 38.0]]
    # Nothing is excluded without the object's region, and its own peak comes first.
    none = torch.zeros(16, 16, dtype=torch.bool)
    assert distractor_points(feats, sim, none, 2, 0.8).tolist() == [[14.0, 14.0], [42.0, 38.0]]
    assert distractor_points(feats, sim, excluded, 2, 0.95).shape == (0, 2)


def test_the_search_window_keeps_positives_near_the_tracked_box():
    sim = torch.zeros(2, 40, 60)
    sim[:, 30, 50] = 1.0  # a distractor, the global peak
    sim[:, 12, 14] = 0.8  # the object, near its previous box
    sim[:, 0, 0] = -1.0  # the least similar pixel
    boxes = [(10.0, 10.0, 20.0, 16.0), None]  # object 1 has no box: it is searched for anywhere
    windows = search_windows((40, 60), boxes, grow=0.5)
    assert windows is not None and windows.shape == (2, 40, 60)
    # 10 x 6 box grown by 5 (x) and 3 (y) on each side: columns 5..25, rows 7..19.
    assert windows[0].nonzero().amin(0).tolist() == [7, 5]
    assert windows[0].nonzero().amax(0).tolist() == [19, 25]
    assert bool(windows[1].all())
    points, labels = select_points(sim, 1, 1, windows)
    assert points[0].tolist() == [[14.0, 12.0], [0.0, 0.0]]  # positive inside, negative anywhere
    assert points[1].tolist() == [[50.0, 30.0], [0.0, 0.0]]
    assert labels.tolist() == [[1, 0], [1, 0]]
    # Off (grow 0) or no box at all: global, as the paper.
    assert search_windows((40, 60), boxes, grow=0.0) is None
    assert search_windows((40, 60), [None, None], grow=0.5) is None
    assert select_points(sim, 1, 1)[0][0].tolist() == [[50.0, 30.0], [0.0, 0.0]]
    # A window smaller than the number of positives asked for falls back to the whole frame.
    tiny = torch.zeros(2, 40, 60, dtype=torch.bool)
    tiny[0, 12, 14] = True
    assert select_points(sim, 2, 0, tiny)[0][0].tolist() == [[50.0, 30.0], [14.0, 12.0]]


# --------------------------------------------------------------------------- d. hysteresis
def test_hysteresis_keeps_an_object_through_n_minus_1_bad_frames_and_drops_it_on_the_nth():
    state = Hysteresis()
    for _ in range(2):
        state = hysteresis_step(state, False, lost_after=3, reacquire_after=2)
        assert not state.lost
    assert hysteresis_step(state, True, 3, 2) == Hysteresis()  # a good frame resets the run
    state = hysteresis_step(state, False, 3, 2)
    assert state.lost
    state = hysteresis_step(state, True, 3, 2)
    assert state.lost  # one good frame is not enough to come back
    state = hysteresis_step(hysteresis_step(state, False, 3, 2), True, 3, 2)
    assert state.lost  # the run was broken
    assert not hysteresis_step(state, True, 3, 2).lost
    # lost_after = 1, reacquire_after = 1: absent on every bad frame, back on every good one.
    assert hysteresis_step(Hysteresis(), False, 1, 1).lost
    assert not hysteresis_step(Hysteresis(lost=True), True, 1, 1).lost


def _scripted(mask: torch.Tensor, score: float) -> Prediction:
    logits = torch.where(mask, 5.0, -5.0)
    return Prediction(
        mask=mask,
        mask_logits=logits,
        low_res_logits=logits[None, :16, :16],
        score=score,
        points=torch.tensor([[40.0, 30.0]], dtype=torch.float64),
        labels=torch.ones(1, dtype=torch.int64),
        similarity=torch.zeros(mask.shape),
        peak_similarity=0.9,
    )


def _script_decoding(tracker: VideoTracker, monkeypatch, fake) -> None:
    """Scripted predictions stand for PerSAM's decoding and the video rules on its masks (the
    jump guard and detached parts, :mod:`persam_video.video.guards`): what the tracker makes of
    them is under test."""
    monkeypatch.setattr(tracker.persam, "segment_features", fake)
    monkeypatch.setattr(
        "persam_video.video.tracker.guard_predictions", lambda sam, feats, preds, *_: preds
    )


def test_the_tracker_loses_and_reacquires_with_hysteresis(tiny_sam, monkeypatch):
    """Scores per frame: good, bad, bad, bad, good, good, good with lost_after 3 and
    reacquire_after 2: kept through two bad frames, lost on the third, back on the second
    good frame; results.json marks the two events."""
    rng = np.random.default_rng(0)
    frames = [random_image(rng, 64, 80) for _ in range(8)]
    first = ellipse_mask(64, 80, 30, 40, 12, 15).astype(np.uint8)
    truth = torch.from_numpy(ellipse_mask(64, 80, 32, 42, 12, 15))
    scores = [0.9, 0.05, 0.05, 0.05, 0.9, 0.9, 0.9]
    calls = []

    def fake(feats, targets, extra):
        calls.append(extra[0])
        return [_scripted(truth, scores[len(calls) - 1])]

    config = PerSAMConfig().with_overrides(["track.lost_after=3", "track.reacquire_after=2"])
    tracker = VideoTracker(tiny_sam, config)
    _script_decoding(tracker, monkeypatch, fake)
    results = list(tracker.track(frames, first))
    present = [r.objects[0].present for r in results]
    assert present == [True, True, True, True, False, False, True, True]
    assert results[4].labels.max() == 0 and results[3].labels.max() == 1
    records = [frame_record(r)["objects"]["1"] for r in results]
    assert [i for i, r in enumerate(records) if r["lost"]] == [4]
    assert [i for i, r in enumerate(records) if r["reacquired"]] == [6]
    assert not any(r.objects[0].updated for r in results[2:5])  # no update on bad frames
    assert calls[2].box is not None  # still tracked: its box is the prompt
    assert calls[4].box is None and calls[5].box is None  # lost: searched over the frame


def test_at_border_measures_the_margin_to_each_edge():
    size = (64, 80)  # (H, W): inclusive pixel boxes end at x 79, y 63
    assert not at_border((10.0, 10.0, 60.0, 50.0), size, 2.0)
    assert at_border((2.0, 10.0, 60.0, 50.0), size, 2.0)  # left
    assert at_border((10.0, 1.0, 60.0, 50.0), size, 2.0)  # top
    assert at_border((10.0, 10.0, 77.0, 50.0), size, 2.0)  # right
    assert at_border((10.0, 10.0, 60.0, 63.0), size, 0.0)  # bottom
    assert not at_border((10.0, 10.0, 76.0, 50.0), size, 2.0)
    assert not at_border(None, size, 2.0)


def _border_clip(reenter: bool, leave_at: tuple[float, float], monkeypatch, tiny_sam):
    """Scripted masks of a 64 x 80 clip: annotated in the middle (frame 0), then smaller at
    ``leave_at`` (frame 1), not found (frame 2), a look-alike found in the middle (frame 3),
    a mask found at the left border (frame 4). Returns each frame's presence."""
    rng = np.random.default_rng(0)
    frames = [random_image(rng, 64, 80) for _ in range(5)]
    first = ellipse_mask(64, 80, 32, 40, 10, 12).astype(np.uint8)
    cy, cx = leave_at
    script = [
        (ellipse_mask(64, 80, cy, cx, 6, 8), 0.9),
        (ellipse_mask(64, 80, cy, cx, 6, 8), 0.05),
        (ellipse_mask(64, 80, 30, 44, 10, 12), 0.9),
        (ellipse_mask(64, 80, 30, 4, 8, 6), 0.9),
    ]
    calls = []

    def fake(feats, targets, extra):
        calls.append(extra[0])
        mask, score = script[len(calls) - 1]
        return [_scripted(torch.from_numpy(mask), score)]

    config = PerSAMConfig().with_overrides([f"track.reenter_at_border={str(reenter).lower()}"])
    tracker = VideoTracker(tiny_sam, config)
    _script_decoding(tracker, monkeypatch, fake)
    return [r.objects[0].present for r in tracker.track(frames, first)]


def test_an_object_that_left_the_view_comes_back_only_through_the_border(tiny_sam, monkeypatch):
    """Leaving at the right border (frame 1), lost (frame 2): the look-alike in the middle
    (frame 3) is not taken, the mask entering at the left border (frame 4) is; without the rule
    the look-alike is taken."""
    right = (32.0, 74.0)
    assert _border_clip(True, right, monkeypatch, tiny_sam) == [True, True, False, False, True]
    assert _border_clip(False, right, monkeypatch, tiny_sam) == [True, True, False, True, True]


def test_an_object_lost_inside_the_frame_is_reacquired_anywhere(tiny_sam, monkeypatch):
    """Lost in the middle (occluded, not leaving): the rule does not apply."""
    inside = (32.0, 40.0)
    assert _border_clip(True, inside, monkeypatch, tiny_sam) == [True, True, False, True, True]


def test_mechanism_fields_are_validated():
    with pytest.raises(ConfigError, match="track.lost_after"):
        PerSAMConfig().with_overrides(["track.lost_after=0"])
    with pytest.raises(ConfigError, match="temporal_prior"):
        PerSAMConfig().with_overrides(["track.temporal_prior=optical"])
    with pytest.raises(ConfigError, match="prior.distractor_ratio"):
        PerSAMConfig().with_overrides(["prior.distractor_ratio=2"])
    with pytest.raises(ConfigError, match="track.border_margin"):
        PerSAMConfig().with_overrides(["track.border_margin=-1"])
    with pytest.raises(ConfigError, match="decode.detached_margin"):
        PerSAMConfig().with_overrides(["decode.detached_margin=-1"])
    assert PerSAMConfig.paper_video().decode.jump_iou == 0
    assert PerSAMConfig.paper_image().prior.distractor_negatives == 0


def test_working_resolution_keeps_the_low_res_prompts(tiny_sam, rng, monkeypatch):
    import persam_video.persam.cascade as cascade

    feats = encode_image(tiny_sam, random_image(rng, 96, 160))
    seen = []
    real = cascade._segment

    def spy(*args):
        seen.append(args[4])
        return real(*args)

    monkeypatch.setattr(cascade, "_segment", spy)
    low = torch.zeros(1, 32, 32)
    extra = [ExtraPrompt(box=(10.0, 10.0, 80.0, 60.0), mask_prompt=low, expected=low)]
    config = PerSAMConfig().with_overrides(["decode.work_size=80"])
    segment_objects(tiny_sam, feats, feats.embedding[0, :, 1, 1][None], config, extra)
    (scaled,) = seen[0]
    assert scaled.box == (5.0, 5.0, 40.0, 30.0)
    assert scaled.mask_prompt is low and scaled.expected is low


MECHANISMS = {
    "mask prior": ["track.temporal_prior=mask"],
    "affinity prior": ["track.temporal_prior=affinity"],
    "flow prior": ["track.temporal_prior=flow"],
    "negatives": ["prior.distractor_negatives=4", "prior.distractor_ratio=0"],
    "hysteresis": ["track.lost_after=2", "track.reacquire_after=2"],
    "jump guard": ["decode.jump_iou=0.9"],
    "re-entry at border": ["track.reenter_at_border=true", "track.border_margin=30"],
    "detached parts": ["decode.drop_detached=true", "decode.detached_margin=0"],
}


#: The function each mechanism runs through (module, name), where one marks it: called with the
#: mechanism on, never with every mechanism off. The others have none of their own (the mask
#: prior is a prompt; hysteresis and the border check run on every frame, and the border rule
#: acts only where an object leaves, which these frames do not show).
MECHANISM_CALLS = {
    "affinity prior": ("persam_video.video.tracker", "propagate_logits"),
    "flow prior": ("persam_video.video.tracker", "warp_low_res"),
    "negatives": ("persam_video.persam.cascade", "_distractor_negatives"),
    "jump guard": ("persam_video.video.guards", "guard_jumps"),
    "detached parts": ("persam_video.video.guards", "drop_detached"),
}
#: Every mechanism off.
ALL_OFF = [
    "track.temporal_prior=none",
    "prior.distractor_negatives=0",
    "decode.jump_iou=0",
    "track.reenter_at_border=false",
    "decode.drop_detached=false",
]


def track_two_objects(sam, overrides: list[str]) -> list:
    """Two objects over four random frames, ``overrides`` on top of the default config."""
    rng = np.random.default_rng(3)
    frames = [random_image(rng, 64, 80) for _ in range(4)]
    first = np.zeros((64, 80), np.uint8)
    first[ellipse_mask(64, 80, 20, 20, 10, 12)] = 1
    first[ellipse_mask(64, 80, 42, 58, 12, 14)] = 2
    config = PerSAMConfig().with_overrides(["track.update_min_score=0", *overrides])
    return list(VideoTracker(sam, config).track(frames, first))


@pytest.mark.parametrize("name", sorted(MECHANISMS))
def test_the_tracker_runs_with_each_mechanism(tiny_sam, name, monkeypatch):
    """Every mechanism runs through the whole tracker (its own function is called, and is not
    with every mechanism off), and the label maps stay well formed (only known ids)."""
    calls = []
    if name in MECHANISM_CALLS:
        module = importlib.import_module(MECHANISM_CALLS[name][0])
        original = getattr(module, MECHANISM_CALLS[name][1])

        def counted(*args, **kwargs):
            calls.append(1)
            return original(*args, **kwargs)

        monkeypatch.setattr(module, MECHANISM_CALLS[name][1], counted)
        track_two_objects(tiny_sam, ALL_OFF)
        assert calls == [], f"{name} ran with every mechanism off"
    results = track_two_objects(tiny_sam, [*ALL_OFF, *MECHANISMS[name]])
    assert len(results) == 4
    assert calls or name not in MECHANISM_CALLS, f"{name} never ran"
    for result in results:
        assert set(np.unique(result.labels)) <= {0, 1, 2}
        assert [o.obj_id for o in result.objects] == [1, 2]


def test_a_saved_target_is_taken_on_the_first_frame_it_is_found():
    never = Hysteresis(lost=True, acquired=False)
    assert hysteresis_step(never, False, 3, 2) == never
    assert not hysteresis_step(never, True, 3, 2).lost  # no reacquire_after run needed
    # Once acquired and lost, re-acquisition takes reacquire_after frames again.
    lost = Hysteresis(lost=True)
    assert hysteresis_step(lost, True, 3, 2).lost
