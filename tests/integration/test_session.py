"""The prompting session: masks, clicks and boxes on any frame, forward and backward passes."""

from __future__ import annotations

import numpy as np
import pytest

from persam_video.config import PerSAMConfig
from persam_video.model.demo import load_demo_sam
from persam_video.persam.prompts import PromptError, prompt_mask
from persam_video.video.session import VideoSession, merge_labels
from persam_video.video.tracker import VideoTracker
from tests.prompt_clips import ENTER, entering_clip

ANNOTATED = 20
#: IoU above which an object counts as found on a frame.
FOUND_IOU = 0.5
#: Clicks and boxes give masks this close (IoU) to the mask they stand for.
PROMPT_IOU = 0.9


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def click_and_box(mask: np.ndarray) -> tuple[list[list[float]], list[float]]:
    """A click at the centroid of ``mask`` and the box around it (pixel edges)."""
    ys, xs = np.nonzero(mask)
    return [[float(xs.mean()), float(ys.mean())]], [
        float(xs.min()),
        float(ys.min()),
        float(xs.max() + 1),
        float(ys.max() + 1),
    ]


@pytest.fixture(scope="module")
def clip():
    return entering_clip()


@pytest.fixture(scope="module")
def tracker():
    return VideoTracker(load_demo_sam(), PerSAMConfig.default())


def annotate(session: VideoSession, kind: str, frame: int, obj_id: int, gt: np.ndarray) -> None:
    click, box = click_and_box(gt)
    if kind == "mask":
        session.add_mask(frame, obj_id, gt)
    elif kind == "click":
        session.add_points(frame, obj_id, click)
    else:
        session.add_box(frame, obj_id, box)


@pytest.mark.parametrize("kind", ["mask", "click", "box"])
def test_an_entering_object_is_found_by_the_backward_pass(clip, tracker, kind):
    frames, labels = clip
    session = VideoSession(tracker, frames)
    annotate(session, kind, ANNOTATED, 2, labels[ANNOTATED] == 2)
    results = list(session.propagate("both"))
    forward = [r for r in results if r.direction == "forward"]
    backward = [r for r in results if r.direction == "backward"]
    assert [r.index for r in forward] == list(range(ANNOTATED, len(frames)))
    assert [r.index for r in backward] == list(range(ANNOTATED - 1, -1, -1))
    for r in backward:
        found = r.labels == 2
        if r.index >= ENTER:
            assert iou(found, labels[r.index] == 2) > FOUND_IOU, r.index
        else:
            assert not found.any(), r.index
            assert not r.objects[0].present
    assert forward[0].objects[0].annotated


def test_clicks_and_boxes_match_the_mask_prompt(clip, tracker):
    frames, labels = clip
    feats = tracker.persam.encode(frames[ANNOTATED])
    for obj_id in (1, 2):
        gt = labels[ANNOTATED] == obj_id
        click, box = click_and_box(gt)
        by_click = prompt_mask(tracker.sam, feats, click)
        by_box = prompt_mask(tracker.sam, feats, box=box)
        assert by_click.output == "multimask" and by_box.output == "single"
        assert iou(by_click.mask, gt) >= PROMPT_IOU, obj_id
        assert iou(by_box.mask, gt) >= PROMPT_IOU, obj_id


def test_a_correction_changes_no_earlier_frame_going_forward(clip, tracker):
    frames, labels = clip
    plain = VideoSession(tracker, frames)
    plain.add_mask(0, 1, labels[0] == 1)
    corrected = VideoSession(tracker, frames)
    corrected.add_mask(0, 1, labels[0] == 1)
    correction = np.zeros_like(labels[15], bool)
    correction[10:40, 20:60] = True  # deliberately another region
    corrected.add_mask(15, 1, correction)
    before = list(plain.propagate("forward"))
    after = list(corrected.propagate("forward"))
    assert [r.index for r in after] == list(range(len(frames)))
    for a, b in zip(before[:15], after[:15], strict=True):
        np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(after[15].labels == 1, correction)
    assert after[15].objects[0].annotated and not before[15].objects[0].annotated
    assert any((a.labels != b.labels).any() for a, b in zip(before[16:], after[16:], strict=True))


def test_two_objects_on_different_frames_keep_their_ids(clip, tracker):
    frames, labels = clip
    session = VideoSession(tracker, frames)
    annotate(session, "click", 5, 1, labels[5] == 1)
    annotate(session, "box", ANNOTATED, 7, labels[ANNOTATED] == 2)  # id 7 for object 2
    merged: dict[int, np.ndarray] = {}
    for r in session.propagate("both"):
        assert set(np.unique(r.labels)) <= {0, 1, 7}
        merged[r.index] = merge_labels(merged.get(r.index, np.zeros_like(r.labels)), r.labels)
    assert sorted(merged) == list(range(len(frames)))
    for index, found in merged.items():
        assert iou(found == 1, labels[index] == 1) > FOUND_IOU, index
        if index >= ENTER:
            assert iou(found == 7, labels[index] == 2) > FOUND_IOU, index
        else:
            assert not (found == 7).any(), index


def test_backward_only_tracks_from_the_last_annotation(clip, tracker):
    frames, labels = clip
    session = VideoSession(tracker, frames)
    session.add_mask(12, 1, labels[12] == 1)
    results = list(session.propagate("backward"))
    assert [r.index for r in results] == list(range(12, -1, -1))
    assert all(r.direction == "backward" for r in results)
    assert results[0].annotated == [1]
    only_frame0 = VideoSession(tracker, frames)
    only_frame0.add_mask(0, 1, labels[0] == 1)
    assert not only_frame0.backward_needed("backward")
    assert [r.index for r in only_frame0.propagate("backward")] == [0]


def test_bad_prompts_are_refused(clip, tracker):
    frames, labels = clip
    session = VideoSession(tracker, frames)
    height, width = labels[0].shape
    with pytest.raises(ValueError, match="beyond the video: it has 30 frames"):
        session.add_mask(30, 1, labels[0] == 1)
    with pytest.raises(ValueError, match="frame index >= 0"):
        session.add_mask(-1, 1, labels[0] == 1)
    for bad_id in (0, 255, 300):
        with pytest.raises(ValueError, match="object ids"):
            session.add_mask(0, bad_id, labels[0] == 1)
    with pytest.raises(PromptError, match="outside the 224x160 frame"):
        session.add_points(0, 1, [[width, 5]])
    with pytest.raises(PromptError, match="outside the 224x160 frame"):
        session.add_box(0, 1, [-1, 0, 10, 10])
    with pytest.raises(PromptError, match="x1 > x0 and y1 > y0"):
        session.add_box(0, 1, [10, 10, 10, 20])
    with pytest.raises(PromptError, match="positive click or a box"):
        session.add_points(0, 1, [[5, 5]], [0])
    with pytest.raises(ValueError, match="is empty"):
        session.add_mask(0, 1, np.zeros((height, width), bool))
    session.add_mask(0, 1, labels[0] == 1)
    with pytest.raises(ValueError, match="already has a prompt on frame 0"):
        session.add_points(0, 1, [[5, 5]])
    with pytest.raises(ValueError, match="unknown direction"):
        list(session.propagate("sideways"))
    with pytest.raises(ValueError, match="nothing to propagate"):
        list(VideoSession(tracker, frames).propagate())


def test_a_prompt_sam_turns_into_nothing_is_refused(clip, tracker, monkeypatch):
    import persam_video.video.session as session_module
    from persam_video.persam.prompts import PromptMask

    frames, labels = clip
    empty = PromptMask(np.zeros(labels[0].shape, bool), 0.1, "multimask")
    monkeypatch.setattr(session_module, "prompt_mask", lambda *args, **kwargs: empty)
    session = VideoSession(tracker, frames)
    with pytest.raises(ValueError, match="points prompt of object 3 on frame 4 into an empty"):
        session.add_points(4, 3, [[5, 5]])
    assert session.prompts == []


@pytest.mark.parametrize("direction", ["forward", "backward", "both"])
def test_the_progress_total_is_the_number_of_results(clip, tracker, direction):
    frames, labels = clip
    session = VideoSession(tracker, frames)
    annotate(session, "click", 5, 1, labels[5] == 1)
    annotate(session, "box", ANNOTATED, 7, labels[ANNOTATED] == 2)
    expected = session.expected_results(direction)
    assert expected == sum(1 for _ in session.propagate(direction))
