"""Tests of the clip families (persam_video.synthetic.families): each does what its tag says."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from itertools import pairwise

import cv2
import numpy as np
import pytest

import persam_video.synthetic.families as families_module
from persam_video.eval.davis_dataset import read_label_png
from persam_video.synthetic import (
    ATTRIBUTES,
    BENCHMARK_FIRST_SEED,
    FAMILIES,
    family_clip_info,
    make_clip,
    make_family_clip,
    plan_family_clip,
    render_family_plan,
)
from persam_video.synthetic.compose import compose
from persam_video.synthetic.export import read_sequence_attributes, write_clip_set
from persam_video.synthetic.families import (
    CUT_FRAMES_RANGE,
    CUT_MIN_JUMP,
    CUT_START_RANGE,
    FAMILY_MIN_FRAMES,
    FAMILY_STREAMS,
    FAST_MIN_STEP,
    FIRST_FRAME_MIN_AREA_FRACTION,
    SCALE_MIN_AREA_FACTOR,
    SCENE_CUT,
    Camera,
)
from persam_video.synthetic.motion import MAX_SPEED
from tests.helpers import REPO_ROOT

SEEDS = range(BENCHMARK_FIRST_SEED, BENCHMARK_FIRST_SEED + 4)
OCCLUDED_RATIO = 0.5  # an occluded target shows at most half of itself on some frame
MIN_HIDDEN_RUN = 3  # frames wholly out of view in a row (HIDDEN_FRAMES_RANGE[0])
LOOK_ALIKE_COLOR_TOLERANCE = 25.0  # mean RGB distance between a target and its copy
APPEARANCE_MIN_EXTRA_CHANGE = 20.0  # mean RGB change beyond what the clip shows without drift
FAST_STEP_SLACK = 0.8  # centroid steps vs the centre's (rotation and rasterization move it)
CAMERA_COMPENSATION_GAIN = 1.5  # background change: as is vs after the camera's motion is undone
CUT_MIN_BACKGROUND_CHANGE = 10.0  # mean RGB change of the background at a cut (19 or more seen)
CUT_CHANGE_GAIN = 3.0  # ... against the change between two frames of the scene (1-6 seen)
CUT_JUMP_SLACK = 0.8  # the targets' centroid jumps vs their centres' (rotation and rasterization)
#: sha256 of the frames and label maps of each family's clip BENCHMARK_FIRST_SEED, computed before
#: the scene-cut family existed: a new family draws from a stream of its own and changes no clip.
#: (They hold as long as numpy's generators and OpenCV's arithmetic do.)
EXISTING_CLIP_SHA256 = {
    "occlusion": "70a7eec54af8e3b40ba779a9b6eeb0ee5625de10da80623a93bfdaaefe32d66f",
    "out-of-view": "c10f3bee4446c7690cb5e33f384712bfec20dd5f2d853edf63d848f2f034cf69",
    "distractors": "5301683a9151df1f3a2be9ae63744c2af40c24d5ac48df847932336da2859e9b",
    "appearance-change": "9b0cbb58506b96d9769958035df710e176190c1555751520142d636f0ade96d4",
    "scale-change": "c7c4c749e347ff8bf8bbcd5b94df0a3c80707076af73b2e21a56547febfb91ce",
    "fast-motion": "b3b07501617c3026b2f4e9a80b24b0ba7c17d229917bb97b877514dd9025ebb3",
    "camera-motion": "d35e268309041a2d0a4c7fcce39dd519ebc72a0bf10b4a6f56bfa13862ef7a25",
}


def rendered(family: str, seed: int, **kwargs):
    plan = plan_family_clip(family, seed, **kwargs)
    frames, layers = zip(*render_family_plan(plan), strict=True)
    return plan, list(frames), list(layers)


def visible_areas(layers, object_id: int) -> np.ndarray:
    return np.array([(lay.labels == object_id).sum() for lay in layers])


def amodal_areas(layers, object_id: int) -> np.ndarray:
    return np.array([lay.amodal[object_id - 1].sum() for lay in layers])


def centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def mean_color(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return frame[mask].astype(np.float64).mean(axis=0)


# ----------------------------------------------------------------------------- all families


def test_every_attribute_has_a_family_and_clips_carry_their_tags():
    assert set(ATTRIBUTES) == {a for tags in FAMILIES.values() for a in tags}
    for family, tags in FAMILIES.items():
        info = family_clip_info(family, BENCHMARK_FIRST_SEED)
        assert info.family == family and info.attributes == tags
        assert info.name == f"synth-{family}-test-{BENCHMARK_FIRST_SEED:05d}"
        assert info.n_frames == 24 and info.split == "test"
    assert make_clip(0, n_frames=2).attributes == ()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_clips_are_deterministic_valid_and_exact(family):
    for seed in SEEDS[:2]:
        plan, frames, layers = rendered(family, seed)
        again = make_family_clip(family, seed)
        assert again.name == plan.info.name and again.attributes == FAMILIES[family]
        for frame, lay, frame2, labels2 in zip(
            frames, layers, again.frames, again.labels, strict=True
        ):
            np.testing.assert_array_equal(frame, frame2)
            np.testing.assert_array_equal(lay.labels, labels2)
        ids = plan.info.object_ids
        height, width = plan.info.size_hw
        first = layers[0].labels
        for object_id in ids:  # the first frame is a usable annotation
            assert (first == object_id).sum() >= FIRST_FRAME_MIN_AREA_FRACTION * first.size
        for frame, lay in zip(frames, layers, strict=True):
            assert frame.shape == (height, width, 3) and frame.dtype == np.uint8
            assert set(np.unique(lay.labels)) <= {0, *ids}
            for object_id in ids:  # ground truth: the visible part of the drawn object, exactly
                visible, full = lay.labels == object_id, lay.amodal[object_id - 1]
                assert not np.any(visible & ~full)
                hidden = full & ~visible
                # hidden by a later object, by the foreground, or by a distractor on top
                assert np.all((lay.labels[hidden] > object_id) | (lay.labels[hidden] == 0))


def test_families_draw_from_their_own_streams():
    seed = BENCHMARK_FIRST_SEED
    firsts = {
        family: make_family_clip(family, seed, size_hw=(120, 160)).frames[0] for family in FAMILIES
    }
    mixed = make_clip(seed, n_frames=1, size_hw=(120, 160)).frames[0]
    for family, frame in firsts.items():
        assert np.abs(frame.astype(int) - mixed).mean() > 5.0, family
    for (a, frame_a), (b, frame_b) in pairwise(firsts.items()):
        assert np.abs(frame_a.astype(int) - frame_b).mean() > 5.0, (a, b)
    val = make_family_clip("occlusion", seed, split="val", size_hw=(120, 160)).frames[0]
    assert np.abs(val.astype(int) - firsts["occlusion"]).mean() > 5.0


@pytest.mark.parametrize("family", list(EXISTING_CLIP_SHA256))
def test_existing_family_clips_are_unchanged(family):
    clip = make_family_clip(family, BENCHMARK_FIRST_SEED)
    digest = hashlib.sha256()
    for frame, labels in zip(clip.frames, clip.labels, strict=True):
        digest.update(frame.tobytes())
        digest.update(labels.tobytes())
    assert digest.hexdigest() == EXISTING_CLIP_SHA256[family]


def test_scene_cut_is_listed_wherever_the_families_are(tmp_path):
    assert ATTRIBUTES[-2:] == ("camera-motion", SCENE_CUT) and FAMILIES[SCENE_CUT] == (SCENE_CUT,)
    assert FAMILY_STREAMS[SCENE_CUT] == 8
    assert sorted(FAMILY_STREAMS.values()) == list(range(1, len(FAMILIES) + 1))
    quality = (REPO_ROOT / "docs" / "quality.md").read_text(encoding="utf-8")
    for family in FAMILIES:
        assert f"``{family}``" in families_module.__doc__, family
        assert f"| `{family}` |" in quality, family
    # the DAVIS-style export of tools/bench_quality.py --families
    (info,) = write_clip_set(
        tmp_path, [(SCENE_CUT, BENCHMARK_FIRST_SEED)], n_frames=FAMILY_MIN_FRAMES
    )
    assert read_sequence_attributes(tmp_path) == {info.name: (SCENE_CUT,)}
    cut = plan_family_clip(SCENE_CUT, BENCHMARK_FIRST_SEED, n_frames=FAMILY_MIN_FRAMES).cut
    annotations = sorted((tmp_path / "Annotations" / "480p" / info.name).glob("*.png"))
    assert len(annotations) == FAMILY_MIN_FRAMES
    for t, path in enumerate(annotations):
        assert read_label_png(path).any() == (not cut.shows(t)), t  # no target on the shot


def test_invalid_family_arguments_raise():
    with pytest.raises(ValueError, match="unknown clip family"):
        plan_family_clip("blur", BENCHMARK_FIRST_SEED)
    with pytest.raises(ValueError, match="at least"):
        plan_family_clip("occlusion", BENCHMARK_FIRST_SEED, n_frames=3)
    with pytest.raises(ValueError):
        plan_family_clip("occlusion", BENCHMARK_FIRST_SEED, split="training")


# ----------------------------------------------------------------------------- one per attribute


def test_occlusion_targets_pass_behind_each_other_and_the_pole():
    for seed in SEEDS:
        _, _, layers = rendered("occlusion", seed)
        by_object = by_pole = 0
        dropped = False
        for lay in layers:
            lower = lay.amodal[0]
            by_object += int((lower & (lay.labels == 2)).sum())
            by_pole += int((lay.amodal.any(axis=0) & lay.foreground).sum())
        for object_id in (1, 2):
            visible, full = visible_areas(layers, object_id), amodal_areas(layers, object_id)
            in_view = full > 0
            dropped |= bool(np.any(visible[in_view] < OCCLUDED_RATIO * full[in_view]))
        assert by_object > 0 and by_pole > 0, seed
        assert dropped, f"seed {seed}: no target is ever more than half hidden"


def test_out_of_view_target_leaves_wholly_and_comes_back():
    for seed in SEEDS:
        plan, _, layers = rendered("out-of-view", seed)
        (object_id,) = plan.info.leaving_ids
        present = visible_areas(layers, object_id) > 0
        outside = amodal_areas(layers, object_id) == 0  # not hidden: outside the frame
        assert present[0]
        gone = np.flatnonzero(outside)
        assert len(gone) >= MIN_HIDDEN_RUN, seed
        runs = np.split(gone, np.flatnonzero(np.diff(gone) != 1) + 1)
        longest = max(runs, key=len)
        assert len(longest) >= MIN_HIDDEN_RUN, (seed, gone)
        assert present[longest[-1] + 1 :].any(), f"seed {seed}: the target never comes back"
        assert not present[outside].any()


def test_distractors_look_the_same_as_a_target_and_are_background():
    checked = 0
    for seed in SEEDS:
        plan, frames, layers = rendered("distractors", seed)
        targets = {t.actor.label: t for t in plan.tracks if t.actor.label}
        copies = [
            (t, label)
            for t in plan.tracks
            if not t.actor.label
            for label, target in targets.items()
            if np.array_equal(t.actor.sprite.rgba, target.actor.sprite.rgba)
        ]
        assert copies, f"seed {seed}: no unannotated copy of a target"
        size_hw = plan.info.size_hw
        for track, label in copies:
            copy_only = compose(size_hw, [replace(track.actor, label=1)], [track.motion.pose()])
            on_copy = copy_only.labels == 1
            assert not np.any(layers[0].labels[on_copy & ~layers[0].amodal.any(axis=0)])
            shown = on_copy & (layers[0].labels == 0)
            target = layers[0].labels == label
            if shown.sum() > 0.5 * on_copy.sum() and target.any():
                gap = np.linalg.norm(mean_color(frames[0], shown) - mean_color(frames[0], target))
                assert gap < LOOK_ALIKE_COLOR_TOLERANCE, (seed, gap)
                checked += 1
    assert checked >= 2, "too few copies in view to compare their colours"


def test_appearance_change_drifts_colour_beyond_the_lighting_wave():
    for seed in SEEDS:
        plan, frames, layers = rendered("appearance-change", seed)
        still = replace(
            plan,
            tracks=tuple(replace(t, end_sprite=None) for t in plan.tracks),
            light_drift=np.ones(3, dtype=np.float32),
        )
        still_frames, still_layers = zip(*render_family_plan(still), strict=True)
        assert any(t.end_sprite is not None for t in plan.tracks if t.actor.label)
        for object_id in plan.info.object_ids:
            first, last = layers[0].labels == object_id, layers[-1].labels == object_id
            assert first.any() and last.any()
            change = np.linalg.norm(mean_color(frames[-1], last) - mean_color(frames[0], first))
            np.testing.assert_array_equal(still_layers[-1].labels, layers[-1].labels)
            still_change = np.linalg.norm(
                mean_color(still_frames[-1], last) - mean_color(still_frames[0], first)
            )
            assert change > still_change + APPEARANCE_MIN_EXTRA_CHANGE, (seed, object_id)


def test_scale_change_target_grows_or_shrinks_by_the_factor():
    for seed in SEEDS:
        plan, _, layers = rendered("scale-change", seed)
        scaled = max(plan.info.object_ids)
        areas = visible_areas(layers, scaled)
        np.testing.assert_array_equal(areas, amodal_areas(layers, scaled))  # never hidden
        ratio = areas[-1] / areas[0]
        assert ratio >= SCALE_MIN_AREA_FACTOR or ratio <= 1 / SCALE_MIN_AREA_FACTOR, (seed, ratio)
        steps = np.diff(areas)
        assert np.all(steps >= 0) or np.all(steps <= 0), "approaches or recedes, monotonically"


def test_fast_motion_target_moves_far_every_frame():
    for seed in SEEDS:
        plan, _, layers = rendered("fast-motion", seed)
        fast = max(plan.info.object_ids)
        short = min(plan.info.size_hw)
        centres = [centroid(lay.labels == fast) for lay in layers]
        steps = np.array([np.linalg.norm(b - a) for a, b in pairwise(centres)])
        assert steps.min() >= FAST_STEP_SLACK * FAST_MIN_STEP * short, (seed, steps.min())
        assert steps.mean() > 2 * MAX_SPEED * short, "much faster than the mixed clips"


def _background_change(plan, frames, layers, later: int) -> tuple[float, float]:
    """Mean absolute change of the background pixels between frame 0 and ``later``: as they
    are, and after warping frame 0 by the camera's motion between the two frames."""
    height, width = plan.info.size_hw
    camera = plan.camera
    to_world = np.vstack([cv2.invertAffineTransform(camera.matrix(0, (height, width))), [0, 0, 1]])
    motion = camera.matrix(later, (height, width)) @ to_world
    warped = cv2.warpAffine(frames[0], motion, (width, height), flags=cv2.INTER_LINEAR)
    inside = cv2.warpAffine(np.ones((height, width), np.uint8), motion, (width, height)) > 0
    labels_warped = cv2.warpAffine(
        layers[0].labels, motion, (width, height), flags=cv2.INTER_NEAREST
    )
    background = inside & (layers[0].labels == 0) & (labels_warped == 0)
    background &= layers[later].labels == 0
    target = frames[later].astype(np.float64)
    raw = np.abs(frames[0] - target)[background].mean()
    compensated = np.abs(warped - target)[background].mean()
    return float(raw), float(compensated)


def test_camera_motion_moves_the_background_as_the_camera_does():
    for seed in SEEDS:
        plan, frames, layers = rendered("camera-motion", seed)
        later = plan.info.n_frames // 4
        moving, compensated = _background_change(plan, frames, layers, later)
        assert moving > CAMERA_COMPENSATION_GAIN * compensated, (seed, moving, compensated)
        assert any(not t.world for t in plan.tracks if t.actor.label), "targets are followed"
        fixed = Camera(plan.camera.start, plan.camera.start, 1.0, 1.0, plan.camera.n_frames)
        still = replace(plan, camera=fixed)
        still_frames, still_layers = zip(*render_family_plan(still), strict=True)
        fixed_change, _ = _background_change(still, still_frames, still_layers, later)
        assert moving > CAMERA_COMPENSATION_GAIN * fixed_change, (seed, moving, fixed_change)


def _background_difference(frames, layers, a: int, b: int) -> float:
    """Mean absolute RGB difference of frames ``a`` and ``b`` where both show background."""
    background = (layers[a].labels == 0) & (layers[b].labels == 0)
    return float(np.abs(frames[a].astype(np.float64) - frames[b])[background].mean())


def test_scene_cut_shows_another_shot_then_the_targets_elsewhere():
    """(Deterministic like every family: test_family_clips_are_deterministic_valid_and_exact.)"""
    for seed in SEEDS:
        plan, frames, layers = rendered("scene-cut", seed)
        cut, n_frames = plan.cut, plan.info.n_frames
        start, end = cut.start, cut.start + cut.frames
        assert int(CUT_START_RANGE[0] * n_frames) <= start <= CUT_START_RANGE[1] * n_frames
        assert CUT_FRAMES_RANGE[0] <= cut.frames <= CUT_FRAMES_RANGE[1] and end < n_frames
        assert not any(track.actor.label for track in cut.tracks)
        assert [t for t in range(n_frames) if cut.shows(t)] == list(range(start, end))
        for t in range(start, end):  # another shot: no target pixel, another background
            assert not layers[t].labels.any() and not layers[t].amodal.any(), (seed, t)
            shot_change = _background_difference(frames, layers, start - 1, t)
            scene_change = _background_difference(frames, layers, start - 2, start - 1)
            assert shot_change > CUT_MIN_BACKGROUND_CHANGE, (seed, t, shot_change)
            assert shot_change > CUT_CHANGE_GAIN * scene_change, (seed, t, scene_change)
        short = min(plan.info.size_hw)
        for object_id in plan.info.object_ids:
            present = visible_areas(layers, object_id) > 0
            assert present[:start].all() and present[end:].all(), (seed, object_id)
            left, back = layers[start - 1].amodal[object_id - 1], layers[end].amodal[object_id - 1]
            jump = np.linalg.norm(centroid(back) - centroid(left))
            assert jump >= CUT_JUMP_SLACK * CUT_MIN_JUMP * short, (seed, object_id, jump / short)
