"""video/flow.py and video/keyframes.py: label propagation along DIS flow, and the re-key rules."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from persam_video.config import KeyframesConfig
from persam_video.persam.features import FrameFeatures
from persam_video.video.flow import (
    LABEL_BINS,
    Propagation,
    dense_flow,
    propagate,
    to_gray,
    warp_low_res,
)
from persam_video.video.keyframes import keyframe_due, rekey_reason

SIZE = (120, 160)
MARGIN = 24


def texture(seed: int, size=(SIZE[0] + 2 * MARGIN, SIZE[1] + 2 * MARGIN)) -> np.ndarray:
    """A smooth random (H, W) uint8 texture, larger than the frames by MARGIN on every side."""
    noise = (np.random.default_rng(seed).random(size) * 255).astype(np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 1.5)


def view(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The frame showing ``image`` moved by (dy, dx): frame[y, x] = image[y - dy, x - dx]."""
    return np.ascontiguousarray(
        image[MARGIN - dy : MARGIN - dy + SIZE[0], MARGIN - dx : MARGIN - dx + SIZE[1]]
    )


def boxes(dy: int = 0, dx: int = 0) -> np.ndarray:
    labels = np.zeros(SIZE, np.uint8)
    labels[30 + dy : 70 + dy, 40 + dx : 90 + dx] = 1
    labels[80 + dy : 105 + dy, 100 + dx : 140 + dx] = 3
    return labels


def within_one_pixel(got: np.ndarray, want: np.ndarray) -> bool:
    """Every pixel where ``got`` and ``want`` differ is within 1 px of an edge of ``want``."""
    kernel = np.ones((3, 3), np.uint8)
    edge = np.zeros(want.shape, bool)
    for obj_id in np.unique(want):
        mask = (want == obj_id).astype(np.uint8)
        edge |= cv2.dilate(mask, kernel).astype(bool) & ~cv2.erode(mask, kernel).astype(bool)
    return bool(np.all(edge[got != want]))


@pytest.mark.parametrize("dy,dx", [(3, 5), (-4, 2), (0, -7)])
def test_a_known_shift_moves_the_masks_by_that_shift(dy, dx):
    image = texture(0)
    carried = propagate(view(image, 0, 0), view(image, dy, dx), boxes())
    assert carried.labels.dtype == np.uint8 and carried.labels.shape == SIZE
    assert within_one_pixel(carried.labels, boxes(dy, dx))
    for obj_id in (1, 3):
        assert carried.share(carried.dropped, obj_id) < 0.02
        ys, xs = np.nonzero(carried.labels == obj_id)
        want_ys, want_xs = np.nonzero(boxes(dy, dx) == obj_id)
        assert abs(ys.mean() - want_ys.mean()) < 1 and abs(xs.mean() - want_xs.mean()) < 1
    assert carried.frame_inconsistent < 0.15  # the strip that enters the frame, at most


@pytest.mark.parametrize("dy,dx", [(4, 8), (-8, 4), (0, -8)])
def test_low_res_logits_move_along_the_flow_by_a_known_shift(dy, dx):
    """The flow temporal prior: SAM-style low-resolution logits over a padded square input
    (frames 120 x 160 -> input 48 x 64 in a 64 x 64 square, 2.5 frame pixels per cell) move
    by the frame's shift, in cells; the cells over the padding are left as they were."""
    image = texture(0)
    backward = dense_flow(view(image, dy, dx), view(image, 0, 0))
    feats = FrameFeatures(torch.zeros(1, 4, 16, 16), SIZE, (48, 64), 64)
    logits = torch.full((1, 64, 64), -8.0)
    logits[0, 48:64] = 5.0  # padding rows (the input has 48): must stay
    logits[0, 12:28, 16:36] = 8.0  # frame pixels y 30..70, x 40..90
    carried = warp_low_res(logits, backward, feats)
    assert carried.shape == logits.shape
    assert torch.equal(carried[0, 48:], logits[0, 48:])
    moved = torch.nonzero(carried[0, :48] > 0)
    origin = torch.nonzero(logits[0, :48] > 0)
    shift = moved.float().mean(0) - origin.float().mean(0)
    # (dy, dx) frame pixels are (dy, dx) / 2.5 cells.
    assert torch.allclose(shift, torch.tensor([dy / 2.5, dx / 2.5]), atol=0.5)
    assert abs(len(moved) - len(origin)) <= 0.1 * len(origin)
    # No motion: the logits stay.
    still = warp_low_res(logits, dense_flow(view(image, 0, 0), view(image, 0, 0)), feats)
    assert torch.allclose(still, logits, atol=1e-3)


def test_the_flow_follows_the_convention():
    image = texture(1)
    flow = dense_flow(view(image, 0, 0), view(image, 2, 4))  # (dx, dy) = (4, 2)
    assert flow.shape == (*SIZE, 2) and flow.dtype == np.float32
    centre = flow[MARGIN:-MARGIN, MARGIN:-MARGIN]
    assert np.allclose(np.median(centre.reshape(-1, 2), axis=0), (4, 2), atol=0.25)


def test_the_forward_backward_error_is_large_on_a_scene_cut():
    labels = boxes()
    same = propagate(view(texture(2), 0, 0), view(texture(2), 1, 1), labels)
    cut = propagate(view(texture(2), 0, 0), view(texture(3), 0, 0), labels)
    assert same.frame_inconsistent < 0.1
    assert cut.frame_inconsistent > 0.5
    assert np.median(cut.fb_error) > 10 * max(np.median(same.fb_error), 0.1)
    auto = KeyframesConfig(mode="auto")
    assert cut.share(cut.dropped, 1) > auto.max_dropped  # dropped pixels became background
    assert rekey_reason(auto, cut, {1: 2000, 3: 1000}) == "flow"
    assert rekey_reason(auto, same, {1: 2000, 3: 1000}) is None


def test_without_drop_inconsistent_pixels_keep_their_label_and_are_still_counted():
    labels = boxes()
    before, after = view(texture(2), 0, 0), view(texture(3), 0, 0)  # a cut: the check fails
    dropped = propagate(before, after, labels)
    kept = propagate(before, after, labels, drop=False)
    assert np.array_equal(kept.dropped, dropped.dropped)
    assert kept.share(kept.dropped, 1) > KeyframesConfig(mode="auto").max_dropped
    # Dropped: those pixels are background. Kept: they hold the label the backward flow points
    # to, exactly the pixels counted.
    for obj_id in (1, 3):
        assert kept.areas[obj_id] - dropped.areas[obj_id] == dropped.dropped[obj_id] > 0
    fail = (dropped.fb_error > 1.0) & np.isfinite(dropped.fb_error)
    assert np.all(dropped.labels[fail] == 0)
    assert np.array_equal(kept.labels[~fail], dropped.labels[~fail])
    assert np.any(kept.labels[fail] == 1)
    # Consistent flow: nothing fails, so both agree.
    image = texture(0)
    same = propagate(view(image, 0, 0), view(image, 3, 5), labels)
    same_kept = propagate(view(image, 0, 0), view(image, 3, 5), labels, drop=False)
    assert (same.labels != same_kept.labels).mean() < 0.01


def test_pixels_moved_out_of_the_frame_are_counted_as_leaving():
    labels = np.zeros(SIZE, np.uint8)
    labels[40:80, SIZE[1] - 20 :] = 2  # at the right edge, moving right by 8 px
    image = texture(4)
    carried = propagate(view(image, 0, 0), view(image, 0, 8), labels)
    assert 0.3 < carried.share(carried.leaving, 2) < 0.5  # 8 of its 20 columns leave
    assert carried.areas[2] < labels.__eq__(2).sum()


def test_gray_and_size_checks():
    rgb = np.zeros((*SIZE, 3), np.uint8)
    assert to_gray(rgb).shape == SIZE
    with pytest.raises(ValueError, match="differ in size"):
        propagate(to_gray(rgb), to_gray(rgb), np.zeros((10, 10), np.uint8))


# --------------------------------------------------------------------------- re-key rules
def counts(**values: int) -> np.ndarray:
    array = np.zeros(LABEL_BINS, np.int64)
    for key, value in values.items():
        array[int(key[1:])] = value
    return array


def carried(*, areas, dropped=None, leaving=None, frame=0.0, previous=None) -> Propagation:
    previous = counts(o1=1000) if previous is None else previous
    return Propagation(
        labels=np.zeros((1, 1), np.uint8),
        fb_error=np.zeros((1, 1), np.float32),
        previous=previous,
        areas=areas,
        dropped=dropped if dropped is not None else counts(),
        leaving=leaving if leaving is not None else counts(),
        frame_inconsistent=frame,
    )


def test_the_schedule():
    every_fourth = KeyframesConfig(interval=4)
    assert [keyframe_due(every_fourth, n)[0] for n in (1, 2, 3, 4)] == [False] * 3 + [True]
    auto = KeyframesConfig(mode="auto", max_gap=3)
    assert keyframe_due(auto, 2) == (False, None) and keyframe_due(auto, 3) == (True, "gap")
    assert not KeyframesConfig().active and KeyframesConfig(interval=2).active and auto.active


def test_each_re_key_reason():
    cfg = KeyframesConfig(mode="auto")
    key = {1: 1000}
    assert rekey_reason(cfg, carried(areas=counts(o1=990)), key) is None
    assert rekey_reason(cfg, carried(areas=counts(o1=990), frame=0.9), key) == "flow"
    assert rekey_reason(cfg, carried(areas=counts(o1=800), dropped=counts(o1=200)), key) == "flow"
    assert rekey_reason(cfg, carried(areas=counts(o1=900), leaving=counts(o1=100)), key) == "border"
    assert rekey_reason(cfg, carried(areas=counts(o1=700)), key) == "area"
    assert rekey_reason(cfg, carried(areas=counts(o1=1400)), key) == "area"
    assert rekey_reason(cfg, carried(areas=counts(), previous=counts()), key) == "area"  # lost
    assert rekey_reason(cfg, carried(areas=counts(), previous=counts()), {1: 0}) is None  # absent
