"""Procedural scenes and video clips with exact instance labels.

No real SAM checkpoint or video dataset is available to this project's tests and CI, so the demo
model is trained, and the video pipeline tested and benchmarked, on procedural data:

- :func:`make_training_sample` / :func:`make_training_pair`: 1-4 large objects (radius 12-30% of
  the short side) over textured backgrounds with same-colour distractors; the pair shows the same
  scene twice with objects moved, rescaled, rotated and the lighting changed (consistent ids).
- :func:`make_scene`: one scene with its visible label map and the full (amodal) object masks.
- :func:`make_clip` / :func:`iter_clip`: 30-80 frame clips of 1-4 moving, occluding objects, with
  frame sizes that are neither square nor multiples of 16; some objects leave and come back.

- :mod:`persam_video.synthetic.families`: :func:`make_family_clip` / :func:`iter_family_clip`:
  clips built around one DAVIS-style attribute (occlusion, out of view, distractors, appearance
  change, scale change, fast motion, camera motion, scene cut), tagged with it
  (``ClipInfo.attributes``).

Labels: 0 is background *and* every distractor (also where a foreground distractor covers an
object); 1..K are the objects, drawn in label order, so a higher label occludes a lower one.

Splits: ``make_clip(seed, split=...)`` maps ``(split, seed)`` to disjoint global seed ranges
(:mod:`persam_video.synthetic.splits`); training draws its generator from
``split_rng("train", worker_seed)`` and never sees a ``"val"`` or ``"test"`` clip.
"""

from persam_video.synthetic.clips import (
    CLIP_SIZES_HW,
    FIRST_FRAME_MIN_AREA_FRACTION,
    Clip,
    ClipInfo,
    clip_info,
    iter_clip,
    make_clip,
)
from persam_video.synthetic.families import (
    ATTRIBUTES,
    FAMILIES,
    FamilyPlan,
    family_clip_info,
    iter_family_clip,
    make_family_clip,
    plan_family_clip,
    render_family_plan,
)
from persam_video.synthetic.scenes import (
    TRAIN_RADIUS_RANGE,
    TRAIN_SIZE_HW,
    Scene,
    make_scene,
    make_training_pair,
    make_training_sample,
)
from persam_video.synthetic.splits import (
    BENCHMARK_FIRST_SEED,
    SPLIT_SEED_OFFSETS,
    SPLIT_SEED_RANGE,
    SPLITS,
    TEST_SEED_OFFSET,
    TRAIN_SEED_OFFSET,
    VAL_SEED_OFFSET,
    split_rng,
    split_seed,
)

__all__ = [
    "ATTRIBUTES",
    "BENCHMARK_FIRST_SEED",
    "CLIP_SIZES_HW",
    "FAMILIES",
    "FIRST_FRAME_MIN_AREA_FRACTION",
    "SPLITS",
    "SPLIT_SEED_OFFSETS",
    "SPLIT_SEED_RANGE",
    "TEST_SEED_OFFSET",
    "TRAIN_RADIUS_RANGE",
    "TRAIN_SEED_OFFSET",
    "TRAIN_SIZE_HW",
    "VAL_SEED_OFFSET",
    "Clip",
    "ClipInfo",
    "FamilyPlan",
    "Scene",
    "clip_info",
    "family_clip_info",
    "iter_clip",
    "iter_family_clip",
    "make_clip",
    "make_family_clip",
    "make_scene",
    "make_training_pair",
    "make_training_sample",
    "plan_family_clip",
    "render_family_plan",
    "split_rng",
    "split_seed",
]
