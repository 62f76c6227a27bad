"""The tracker's rules with constructed inputs: fusion, momentum, trust gating, absence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from persam_video.config import PerSAMConfig, PresenceConfig, TrackConfig
from persam_video.labels import LabelMap
from persam_video.persam.cascade import Prediction
from persam_video.video.rules import (
    box_center,
    expand_box,
    fuse,
    is_absent,
    momentum_update,
    should_update,
)
from persam_video.video.tracker import VideoTracker
from tests.helpers import ellipse_mask, random_image


def test_fusion_takes_the_highest_positive_logit():
    logits = torch.tensor(
        [
            [[2.0, -1.0, 0.5], [-3.0, 1.0, 0.0]],
            [[1.0, -2.0, 0.7], [-1.0, 3.0, 0.0]],
        ]
    )
    labels = fuse(logits, [4, 9])
    assert labels.tolist() == [[4, 0, 9], [0, 9, 0]]
    assert labels.dtype == torch.uint8
    assert fuse(logits[:0], []).tolist() == [[0, 0, 0], [0, 0, 0]]


def test_momentum_rule():
    prev, new, first = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), torch.tensor([2.0, 2.0])
    got = momentum_update(prev, new, first, momentum=0.8, anchor=0.0)
    assert torch.allclose(got, torch.tensor([0.8, 0.2]))
    got = momentum_update(prev, new, first, momentum=0.8, anchor=0.25)
    assert torch.allclose(got, 0.25 * first + 0.75 * torch.tensor([0.8, 0.2]))
    assert torch.equal(momentum_update(prev, new, first, momentum=1.0, anchor=0.0), prev)


def test_trust_gating():
    cfg = TrackConfig(update_min_score=0.6, update_max_area_change=2.0)
    assert should_update(0.9, 1000, 800, cfg)
    assert not should_update(0.5, 1000, 800, cfg)  # low score
    assert not should_update(0.9, 2100, 1000, cfg)  # grew more than 2x
    assert not should_update(0.9, 400, 1000, cfg)  # shrank more than 2x
    assert should_update(0.9, 500, 1000, cfg)  # exactly 2x is allowed
    assert not should_update(0.9, 0, 1000, cfg)
    assert not should_update(0.9, 1000, 1000, TrackConfig(update=False))


def _prediction(mask_pixels: int, score: float, peak: float) -> Prediction:
    mask = torch.zeros(10, 10, dtype=torch.bool)
    mask.view(-1)[:mask_pixels] = True
    logits = torch.where(mask, 1.0, -1.0)
    return Prediction(
        mask=mask,
        mask_logits=logits,
        low_res_logits=logits[None],
        score=score,
        points=torch.zeros(1, 2),
        labels=torch.ones(1, dtype=torch.int64),
        similarity=torch.zeros(10, 10),
        peak_similarity=peak,
    )


def test_absence_rules():
    cfg, presence = TrackConfig(), PresenceConfig(min_similarity=0.5, min_score=0.3)
    assert not is_absent(_prediction(20, 0.9, 0.8), cfg, presence)
    assert is_absent(_prediction(20, 0.9, 0.4), cfg, presence)  # low similarity peak
    assert is_absent(_prediction(20, 0.2, 0.8), cfg, presence)  # low score
    assert is_absent(_prediction(0, 0.9, 0.8), cfg, presence)  # empty mask
    off = TrackConfig(occlusion=False)
    assert not is_absent(_prediction(20, 0.01, -0.5), off, presence)
    assert is_absent(_prediction(0, 0.9, 0.9), off, presence)
    assert is_absent(_prediction(20, 0.01, -0.5), off, presence, search=True)


def test_box_rules_follow_the_official_code():
    assert expand_box((5, 3, 50, 40), 10, (45, 55)) == (0.0, 0.0, 55, 45)
    assert expand_box((20, 30, 30, 35), 10, (100, 100)) == (10, 20, 40, 45)
    assert box_center((10, 20, 41, 45)) == (25.0, 32.0)


def test_check_labels_errors():
    with pytest.raises(ValueError, match="empty"):
        LabelMap.check(np.zeros((4, 5), np.uint8), (4, 5))
    with pytest.raises(ValueError, match="5x4 .*--resize-mask"):
        LabelMap.check(np.ones((4, 5), np.uint8), (8, 10))
    with pytest.raises(ValueError, match=r"\(H, W\) label map"):
        LabelMap.check(np.ones((4, 5, 3), np.uint8), (4, 5))
    checked = LabelMap.check(np.ones((4, 5), bool), (4, 5))
    assert checked.array.dtype == np.uint8 and checked.ids == (1,)
    assert LabelMap.check(checked, (4, 5)) is checked  # checked once, passed on as it is


class _FakeSegmenter:
    """Replaces PerSAM's per-frame decoding with scripted predictions, to test the tracker."""

    def __init__(self, script):
        self.script = script
        self.calls = []

    def __call__(self, feats, targets, extra):
        self.calls.append((len(targets), [e.box for e in extra], [t.embedding for t in targets]))
        return self.script(len(self.calls), feats)


def _script_decoding(tracker: VideoTracker, monkeypatch, fake) -> None:
    """Scripted predictions stand for PerSAM's decoding and the video rules on its masks (the
    jump guard and detached parts, :mod:`persam_video.video.guards`): what the tracker makes of
    them is under test."""
    monkeypatch.setattr(tracker.persam, "segment_features", fake)
    monkeypatch.setattr(
        "persam_video.video.tracker.guard_predictions", lambda sam, feats, preds, *_: preds
    )


def test_absent_objects_are_searched_again_without_box(tiny_sam, monkeypatch):
    """An object found, then lost (low score), then found again: no box while lost, no update."""
    rng = np.random.default_rng(0)
    frames = [random_image(rng, 64, 80) for _ in range(4)]
    first = ellipse_mask(64, 80, 30, 40, 12, 15).astype(np.uint8) * 2
    truth = torch.from_numpy(ellipse_mask(64, 80, 32, 42, 12, 15))
    scores = {1: 0.9, 2: 0.05, 3: 0.9}

    def script(call, feats):
        return [_scripted(truth, scores[call], 0.9)]

    single = ["track.lost_after=1", "track.reacquire_after=1"]  # absent on the bad frame itself
    tracker = VideoTracker(tiny_sam, PerSAMConfig().with_overrides(["track.anchor=0", *single]))
    fake = _FakeSegmenter(script)
    _script_decoding(tracker, monkeypatch, fake)
    results = list(tracker.track(frames, first))
    assert [r.objects[0].present for r in results] == [True, True, False, True]
    assert results[2].labels.max() == 0  # absent: empty mask
    boxes = [c[1][0] for c in fake.calls]
    assert boxes[0] is not None and boxes[1] is not None  # from frames 0 and 1
    assert boxes[2] is None  # frame 2 was absent: no box prompt on frame 3
    assert results[1].objects[0].updated and not results[2].objects[0].updated
    emb = [c[2][0] for c in fake.calls]
    assert not torch.equal(emb[0], emb[1])  # updated after frame 1
    assert torch.equal(emb[1], emb[2])  # not updated while absent
    assert set(np.unique(results[3].labels)) == {0, 2}


def _scripted(mask: torch.Tensor, score: float, peak: float) -> Prediction:
    logits = torch.where(mask, 5.0, -5.0)
    return Prediction(
        mask=mask,
        mask_logits=logits,
        low_res_logits=logits[None, :16, :16],
        score=score,
        points=torch.tensor([[40.0, 30.0]], dtype=torch.float64),
        labels=torch.ones(1, dtype=torch.int64),
        similarity=torch.zeros(mask.shape),
        peak_similarity=peak,
    )


def test_overlapping_objects_never_share_pixels(tiny_sam, monkeypatch):
    rng = np.random.default_rng(1)
    frames = [random_image(rng, 64, 80) for _ in range(2)]
    first = np.zeros((64, 80), np.uint8)
    first[10:30, 10:30] = 1
    first[35:55, 40:70] = 5
    a = torch.zeros(64, 80)
    a[5:40, 5:50] = 2.0  # object 1 claims a big region
    b = torch.zeros(64, 80)
    b[20:60, 30:75] = 3.0  # object 5 claims an overlapping one with higher logits

    def script(call, feats):
        return [
            Prediction(
                mask=a > 0,
                mask_logits=a - 1,
                low_res_logits=a[None],
                score=0.9,
                points=torch.zeros(1, 2),
                labels=torch.ones(1, dtype=torch.int64),
                similarity=a,
                peak_similarity=0.9,
            ),
            Prediction(
                mask=b > 0,
                mask_logits=b - 1,
                low_res_logits=b[None],
                score=0.9,
                points=torch.zeros(1, 2),
                labels=torch.ones(1, dtype=torch.int64),
                similarity=b,
                peak_similarity=0.9,
            ),
        ]

    tracker = VideoTracker(tiny_sam, PerSAMConfig())
    _script_decoding(tracker, monkeypatch, _FakeSegmenter(script))
    last = list(tracker.track(frames, first))[-1]
    overlap = (a > 0) & (b > 0)
    assert (last.labels[overlap.numpy()] == 5).all()
    assert last.objects[0].area + last.objects[1].area == int(((a > 0) | (b > 0)).sum())
    assert last.objects[0].bbox == (5, 5, 49, 39)
