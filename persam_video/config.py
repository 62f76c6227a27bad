"""Configuration: frozen dataclasses, YAML presets and ``key=value`` overrides.

A :class:`PerSAMConfig` has one section per stage of the pipeline:

- ``prior``: how the target embedding is pooled from the reference mask and how point prompts are
  taken from the location-confidence map;
- ``decode``: target-guided attention, target-semantic prompting and cascaded post-refinement;
- ``presence``: when a prediction counts as the target found (image search, saved targets, and
  the tracker's occlusion handling);
- ``track``: what the video tracker adds (box prompts from the previous frame, momentum update of
  the target embedding, occlusion handling with hysteresis, the temporal prior);
- ``keyframes``: which frames go through SAM; the others get the masks carried along the optical
  flow from the frame before (``persam_video.video.flow``).

The presets live as YAML files in ``configs/`` (shipped in the package as ``persam_video/presets``)
and are loaded by name (``default``, ``paper_image``, ``paper_video``, ``fast``) or by path.
The dataclass defaults are the ``default`` preset; ``configs/default.yaml`` spells them out.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import reprlib
import textwrap
import types
import typing
import warnings
from dataclasses import dataclass, field, fields, is_dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

PRESET_NAMES = ("default", "paper_image", "paper_video", "fast")
#: Longest value quoted back in an error message (characters).
MAX_SHOWN_VALUE = 80
#: Width of the field comments of :func:`describe_config`.
DOC_WIDTH = 96
#: Deepest nesting of lists and mappings read from a config, an override, a target file's
#: metadata or a manifest row (a config needs 2): deeper input is refused before Python's
#: recursion limit is reached.
MAX_NESTING = 32

# Ranges of the numeric fields (each field's comment says its own; ``_check_range`` checks
# them when a config is built, before any work).
#: Most points of one kind (positive, negative, distractor) per object: the cells of SAM's
#: 64 x 64 feature grid.
MAX_POINTS = 4096
#: Largest radius or margin in feature cells (SAM's feature grid is 64 cells wide).
MAX_CELLS = 64
#: Largest margin in cells of SAM's low-resolution mask (256 wide).
MAX_LOW_RES_CELLS = 256
#: Largest size, margin or distance in pixels.
MAX_PIXELS = 16384
#: Largest count of frames (hysteresis).
MAX_FRAMES = 1_000_000
#: Largest keyframe interval and gap (frames): ``--keyframes`` up to this.
MAX_KEYFRAME_GAP = 1000
#: Largest search window, in box sizes (far more than any frame).
MAX_SEARCH_WINDOW = 100.0
#: Largest area change factor.
MAX_AREA_FACTOR = 1000.0
#: Largest softmax temperature of the affinity propagation (cosine similarity units).
MAX_TEMPERATURE = 10.0
#: Most PerSAM-F optimizer steps, and the largest learning rate.
MAX_FINETUNE_STEPS, MAX_LEARNING_RATE = 100_000, 1.0
#: Largest ``finetune.loss_side`` (pixels).
MAX_LOSS_SIDE = 8192
#: Largest intensity of a mask under the ``paper`` reference rule (8-bit images).
MAX_MASK_VALUE = 255.0
#: Most cascaded post-refinement steps (mask prompt, then box prompt).
MAX_REFINE_STEPS = 2


class ConfigError(ValueError):
    """A configuration file, preset name or override is invalid."""


@dataclass(frozen=True)
class PriorConfig:
    """Target embedding and location prior (positive/negative point prompts)."""

    #: Pooling of the reference features over the target's cells: ``mean`` (persam.py) or
    #: ``mean_max`` = (mean + max) / 2 per channel (the official video code).
    pool: Literal["mean", "mean_max"] = "mean"
    #: Which feature cells belong to the target. ``paper``: the official rule, the mask rendered
    #: at intensity ``ref_mask_value``, resized and padded like the image, normalized like the
    #: image's red channel, bilinearly sampled at each cell, cell kept when positive. ``area``: a
    #: cell is kept when the mask covers at least ``ref_area_threshold`` of it (the best-covered
    #: cells when none does, so tiny objects still get an embedding).
    ref_cells: Literal["paper", "area"] = "area"
    #: Mask intensity under the ``paper`` rule: 128 in persam.py (the PerSeg PNGs), 215 in the
    #: official video code. Range: (0, 255].
    ref_mask_value: float = 128.0
    #: Covered share of a cell needed under the ``area`` rule. Range: (0, 1].
    ref_area_threshold: float = 0.5
    #: Number of positive points (highest similarity). Range: [1, 4096].
    num_positive: int = 1
    #: Number of negative points (lowest similarity). Range: [0, 4096].
    num_negative: int = 1
    #: Distractor-aware negatives: up to this many extra negative points at the most similar
    #: local peaks of the similarity grid outside where the object is expected (its previous
    #: mask in a video, grown by ``distractor_margin`` cells). None without an expected region
    #: (image mode, the first frame after a loss). 0: off. Range: [0, 4096].
    distractor_negatives: int = 2
    #: A distractor peak must reach this share of the object's own peak similarity.
    #: Range: [0, 1].
    distractor_ratio: float = 0.6
    #: Feature cells added around the expected region before looking for distractor peaks.
    #: Range: [0, 64].
    distractor_margin: int = 1
    #: Search window: where an object is tracked (it has a box prompt, its previous box in a
    #: video), its positive points are the most similar pixels inside that box grown by this
    #: many box sizes on every side, instead of anywhere in the frame; the negatives stay the
    #: least similar pixels anywhere. Without a box (image mode, the first frame after a loss,
    #: a saved target searched for) the search is global. 0: off (always global, as the paper).
    #: Range: [0, 100].
    search_window: float = 0.5

    def __post_init__(self) -> None:
        _check_range("prior.search_window", self.search_window, 0.0, MAX_SEARCH_WINDOW)
        _check_range("prior.distractor_negatives", self.distractor_negatives, 0, MAX_POINTS)
        _check_range("prior.distractor_ratio", self.distractor_ratio, 0.0, 1.0)
        _check_range("prior.distractor_margin", self.distractor_margin, 0, MAX_CELLS)
        _check_range(
            "prior.ref_mask_value", self.ref_mask_value, 0.0, MAX_MASK_VALUE, low_open=True
        )
        _check_range("prior.ref_area_threshold", self.ref_area_threshold, 0.0, 1.0, low_open=True)
        _check_range("prior.num_positive", self.num_positive, 1, MAX_POINTS)
        _check_range("prior.num_negative", self.num_negative, 0, MAX_POINTS)


@dataclass(frozen=True)
class DecodeConfig:
    """Target-guided attention, target-semantic prompting and cascaded post-refinement."""

    #: Bias the token-to-image cross-attention with the similarity map (target-guided attention).
    guided_attention: bool = True
    #: How the attention bias is computed. ``paper``: the full-image similarity map standardized and
    #: resized to the feature grid (as persam.py, which ignores SAM's padding on non-square images).
    #: ``grid``: the cell similarities standardized over the cells that hold image content, so the
    #: bias stays aligned with the features on any aspect ratio; padding cells get the lowest bias.
    guidance_map: Literal["paper", "grid"] = "grid"
    #: Add the target embedding to the decoder tokens (target-semantic prompting).
    semantic_prompt: bool = True
    #: The first decoding step asks SAM for its three multimask outputs instead of one.
    first_multimask: bool = False
    #: Which output of the first step is kept: the ``first`` output, the ``largest`` mask, or the
    #: best ``score``.
    first_pick: Literal["first", "largest", "score"] = "first"
    #: Cascaded post-refinement steps: 0 none, 1 mask prompt, 2 mask prompt then box prompt.
    #: Range: [0, 2].
    refine_steps: int = 2
    #: Resolution of the masks between decoding steps. ``frame``: each step's mask is upsampled
    #: to the frame and its box (and the ``largest`` pick) read there, as the official code does.
    #: ``low``: they are read from SAM's low-resolution logits (boxes in frame pixels, through
    #: 1-D resizes of the logits' row and column maxima) and only the final mask is upsampled.
    intermediate: Literal["frame", "low"] = "low"
    #: Working resolution: when a frame's longest side is larger, the frame-size maps (the
    #: similarity map, and with ``intermediate: frame`` the intermediate masks) are computed at
    #: this size and the final mask logits upsampled to the frame. 0: the frame's own resolution.
    #: Range: [0, 16384] (pixels).
    work_size: int = 0
    #: Jump guard: where an object is expected (a video's temporal prior) and its final mask
    #: overlaps that expected region by an IoU below this, SAM also decodes the object from the
    #: temporal prompts alone (the box and the expected logits as mask prompt, no location
    #: prior, no guidance); that mask replaces the jump where it agrees with the expected
    #: region (IoU at least this) and more than the jump does: the object is still there.
    #: Elsewhere (the object hidden or gone) the jump stands. Only unbroken tracks are
    #: guarded: an object not found on a frame, or whose jump stood, is not until it is
    #: annotated again. 0: off. Range: [0, 1].
    jump_iou: float = 0.7
    #: Detached parts: where an object is expected (a video's temporal prior) and its final
    #: mask falls into several connected pieces, some near the expected region (within
    #: ``detached_margin`` low-resolution cells) and some not, the pieces away from it are
    #: removed: the mask spread onto something else. A mask wholly away from it is kept (the
    #: jump guard's case).
    drop_detached: bool = True
    #: Cells of SAM's low-resolution mask (4 per feature cell) around the expected region
    #: within which a piece still counts as near it. Range: [0, 256].
    detached_margin: int = 2

    def __post_init__(self) -> None:
        _check_range("decode.jump_iou", self.jump_iou, 0.0, 1.0)
        _check_range("decode.detached_margin", self.detached_margin, 0, MAX_LOW_RES_CELLS)
        _check_range("decode.refine_steps", self.refine_steps, 0, MAX_REFINE_STEPS)
        _check_range("decode.work_size", self.work_size, 0, MAX_PIXELS)
        if self.first_pick != "first" and not self.first_multimask:
            raise ConfigError(
                f"decode.first_pick={self.first_pick!r} needs decode.first_multimask=true"
            )


@dataclass(frozen=True)
class TrackConfig:
    """What the video tracker adds on top of the per-frame PerSAM pass."""

    #: Prompt with the object's box in the previous frame (expanded by ``box_margin`` pixels).
    box_prompt: bool = True
    #: Margin in pixels of the original frame added on every side of the previous box.
    #: Range: [0, 16384].
    box_margin: float = 10.0
    #: Add the centre of the (expanded) previous box as an extra positive point.
    box_center_point: bool = False
    #: Update the target embedding frame by frame with the momentum rule.
    update: bool = True
    #: e_t = momentum * e_{t-1} + (1 - momentum) * embed(frame_t, mask_t). Range: [0, 1].
    momentum: float = 0.9
    #: Share of the first-frame embedding mixed back in after each update, so the target cannot
    #: drift away from what the user marked: e_t = anchor * e_0 + (1 - anchor) * e_t.
    #: Range: [0, 1].
    anchor: float = 0.2
    #: Update only when the predicted score is at least this. Range: [0, 1].
    update_min_score: float = 0.5
    #: Update only when the mask area changed by at most this factor since the last update.
    #: Range: [1, 1000].
    update_max_area_change: float = 2.0
    #: Declare an object absent (empty mask, no update, no box prompt next frame) when it is not
    #: confidently found (the ``presence`` thresholds).
    occlusion: bool = True
    #: Temporal prior of the first decoding step. ``none``: none. ``mask``: the object's previous
    #: low-resolution logits are its mask prompt. ``affinity``: those logits carried to this
    #: frame by feature affinity (each cell takes the softmax-weighted average of the previous
    #: frame's cells within ``affinity_radius`` cells, weighted by the cosine similarity of their
    #: SAM features over ``affinity_temperature``) are the mask prompt, and the box prompt is
    #: the carried mask's box (grown by ``box_margin``), where it has one. ``flow``: the same,
    #: with the logits carried along the dense optical flow (OpenCV DIS, ``flow_preset``) from
    #: this frame back to the previous one.
    temporal_prior: Literal["none", "mask", "affinity", "flow"] = "affinity"
    #: Search radius of the affinity propagation, in feature cells. Range: [0, 64].
    affinity_radius: int = 3
    #: Softmax temperature of the affinity propagation (cosine similarity units).
    #: Range: (0, 10].
    affinity_temperature: float = 0.05
    #: DIS preset of the ``flow`` temporal prior (``ultrafast``, ``fast``, ``medium``).
    flow_preset: Literal["ultrafast", "fast", "medium"] = "fast"
    #: Absence with hysteresis: a tracked object is lost (empty mask, searched over the whole
    #: frame) only after this many consecutive frames on which it is not found; on the frames
    #: before, its predicted mask is kept (no embedding update). 1: lost on the first bad frame.
    #: Range: [1, 1000000].
    lost_after: int = 1
    #: A lost object is re-acquired after this many consecutive frames on which it is found
    #: (its mask stays empty until then). 1: re-acquired on the first good frame. A saved
    #: target not seen yet is taken on the first frame it is found. Range: [1, 1000000].
    reacquire_after: int = 1
    #: An object lost while leaving the view (on the frame before, its box was within
    #: ``border_margin`` pixels of an edge and its area below its reference area) is
    #: re-acquired only by a mask that reaches the border too (it comes back into view), not by
    #: a look-alike inside the frame. Off: anywhere. Objects lost elsewhere (occluded) are not
    #: affected.
    reenter_at_border: bool = True
    #: Pixels from an edge within which a box counts as at the frame's border.
    #: Range: [0, 16384].
    border_margin: float = 2.0

    def __post_init__(self) -> None:
        _check_range("track.affinity_radius", self.affinity_radius, 0, MAX_CELLS)
        _check_range(
            "track.affinity_temperature",
            self.affinity_temperature,
            0.0,
            MAX_TEMPERATURE,
            low_open=True,
        )
        _check_range("track.lost_after", self.lost_after, 1, MAX_FRAMES)
        _check_range("track.reacquire_after", self.reacquire_after, 1, MAX_FRAMES)
        _check_range("track.box_margin", self.box_margin, 0.0, MAX_PIXELS)
        _check_range("track.border_margin", self.border_margin, 0.0, MAX_PIXELS)
        _check_range("track.momentum", self.momentum, 0.0, 1.0)
        _check_range("track.anchor", self.anchor, 0.0, 1.0)
        _check_range("track.update_min_score", self.update_min_score, 0.0, 1.0)
        _check_range(
            "track.update_max_area_change", self.update_max_area_change, 1.0, MAX_AREA_FACTOR
        )


@dataclass(frozen=True)
class PresenceConfig:
    """When a prediction counts as the target found: used to search images and saved targets,
    and by the tracker's occlusion handling (``track.occlusion``)."""

    #: Not found when the peak cosine similarity to the target falls below this.
    #: Range: [-1, 1].
    min_similarity: float = 0.5
    #: Not found when the predicted score falls below this. Range: [0, 1].
    min_score: float = 0.3

    def __post_init__(self) -> None:
        _check_range("presence.min_similarity", self.min_similarity, -1.0, 1.0)
        _check_range("presence.min_score", self.min_score, 0.0, 1.0)


@dataclass(frozen=True)
class FinetuneConfig:
    """PerSAM-F: learn how to mix SAM's three multimask outputs on the reference (SAM frozen)."""

    #: Learn the mask weights when personalizing.
    enabled: bool = False
    #: Optimizer steps (the official code: 1000 for images, 800 for video). Range: [1, 100000].
    steps: int = 1000
    #: AdamW learning rate (the official code: 1e-3 for images, 4e-4 for video), cosine decay.
    #: Range: (0, 1].
    lr: float = 1e-3
    #: Take the loss on the reference resized to at most this many pixels a side (0: at its
    #: full resolution, as the official code does; each step then costs a pass over every
    #: pixel of the photo). Range: [0, 8192].
    loss_side: int = 512

    def __post_init__(self) -> None:
        _check_range("finetune.steps", self.steps, 1, MAX_FINETUNE_STEPS)
        _check_range("finetune.loss_side", self.loss_side, 0, MAX_LOSS_SIDE)
        _check_range("finetune.lr", self.lr, 0.0, MAX_LEARNING_RATE, low_open=True)


@dataclass(frozen=True)
class KeyframesConfig:
    """Which frames go through SAM (keyframes); the frames in between get the previous frame's
    masks carried along the dense optical flow (OpenCV DIS, forward-backward checked)."""

    #: ``interval``: SAM on every ``interval``-th frame. ``auto``: a new keyframe when carrying the
    #: masks becomes unreliable (the thresholds below) and at the latest after ``max_gap`` frames.
    mode: Literal["interval", "auto"] = "interval"
    #: With ``mode: interval``, SAM on frames 0, N, 2N, ...; 1 is every frame (no flow at all,
    #: the tracker exactly as without keyframes). Range: [1, 1000].
    interval: int = 1
    #: With ``mode: auto``, at most this many frames from one keyframe to the next.
    #: Range: [1, 1000].
    max_gap: int = 8
    #: Forward-backward error (pixels) above which a carried pixel fails the check.
    #: Range: (0, 16384].
    fb_threshold: float = 2.5
    #: Whether pixels that fail the check become background (``true``) or keep the label the
    #: backward flow points to (``false``); they count towards ``max_dropped`` either way.
    drop_inconsistent: bool = False
    #: ``auto`` re-keys (``flow``) when the share of any object's pixels that fail the check
    #: exceeds this... Range: [0, 1].
    max_dropped: float = 0.1
    #: ... or when this share of the whole frame is inconsistent (a scene cut: every object,
    #: present or not, is searched again). Range: [0, 1].
    max_frame_inconsistent: float = 0.5
    #: ``auto`` re-keys (``area``) when an object's carried area differs from its area on the
    #: last keyframe by more than this factor (either way; an object lost by the flow counts).
    #: Range: [1, 1000].
    max_area_change: float = 1.25
    #: ``auto`` re-keys (``border``) when the flow moves more than this share of an object's
    #: pixels out of the frame. Range: [0, 1].
    max_leaving: float = 0.05
    #: DIS preset: ``ultrafast``, ``fast`` or ``medium`` (slower, more accurate).
    flow_preset: Literal["ultrafast", "fast", "medium"] = "medium"

    def __post_init__(self) -> None:
        _check_range("keyframes.interval", self.interval, 1, MAX_KEYFRAME_GAP)
        _check_range("keyframes.max_gap", self.max_gap, 1, MAX_KEYFRAME_GAP)
        _check_range("keyframes.fb_threshold", self.fb_threshold, 0.0, MAX_PIXELS, low_open=True)
        _check_range("keyframes.max_dropped", self.max_dropped, 0.0, 1.0)
        _check_range("keyframes.max_frame_inconsistent", self.max_frame_inconsistent, 0.0, 1.0)
        _check_range("keyframes.max_area_change", self.max_area_change, 1.0, MAX_AREA_FACTOR)
        _check_range("keyframes.max_leaving", self.max_leaving, 0.0, 1.0)

    @property
    def active(self) -> bool:
        """Whether any frame skips SAM (``auto``, or an interval above 1)."""
        return self.mode == "auto" or self.interval > 1


@dataclass(frozen=True)
class PerSAMConfig:
    """All settings of PerSAM and of the video tracker. Defaults are the ``default`` preset."""

    prior: PriorConfig = field(default_factory=PriorConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    presence: PresenceConfig = field(default_factory=PresenceConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    keyframes: KeyframesConfig = field(default_factory=KeyframesConfig)

    # ----------------------------------------------------------------- presets
    @classmethod
    def default(cls) -> PerSAMConfig:
        """Our recommended settings (``configs/default.yaml``)."""
        return load_config("default")

    @classmethod
    def paper_image(cls) -> PerSAMConfig:
        """The official ``persam.py`` of Personalize-SAM (``configs/paper_image.yaml``)."""
        return load_config("paper_image")

    @classmethod
    def paper_video(cls) -> PerSAMConfig:
        """The official ``persam_video.py`` of Personalize-SAM (``configs/paper_video.yaml``)."""
        return load_config("paper_video")

    @classmethod
    def fast(cls) -> PerSAMConfig:
        """Fewer decoder passes for speed (``configs/fast.yaml``)."""
        return load_config("fast")

    # ----------------------------------------------------------------- (de)serialization
    def to_dict(self) -> dict[str, Any]:
        """Nested plain-dict form, as written in the YAML files."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PerSAMConfig:
        """Build a config from a (possibly partial) nested dict; unknown keys are an error.

        Keys renamed in an earlier release (:data:`RENAMED_KEYS`) are still read, with a
        warning; keys removed since (:data:`REMOVED_KEYS`) are dropped."""
        return _build(cls, _migrate(data), prefix="")

    def with_overrides(self, overrides: list[str] | tuple[str, ...]) -> PerSAMConfig:
        """Apply ``section.field=value`` strings (values parsed as YAML scalars)."""
        data = self.to_dict()
        for item in overrides:
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ConfigError(f"override {item!r} is not of the form section.field=value")
            key = _renamed(key)
            section, _, name = key.partition(".")
            if key in REMOVED_KEYS:
                raise ConfigError(
                    f"config key {key!r} was removed (an experiment no preset used); "
                    f"valid keys: {', '.join(valid_keys())}"
                )
            if section not in data or name not in data[section]:
                raise ConfigError(
                    f"unknown config key {key!r}; valid keys: {', '.join(valid_keys())}"
                )
            try:
                data[section][name] = load_yaml(raw) if raw.strip() else raw
            except ConfigError as exc:
                raise ConfigError(f"the value of {key!r}: {exc}") from None
            except yaml.YAMLError as exc:
                shown = raw if len(raw) <= MAX_SHOWN_VALUE else f"{raw[:MAX_SHOWN_VALUE]}..."
                raise ConfigError(f"cannot parse the value of {key!r}: {shown!r}") from exc
        return PerSAMConfig.from_dict(data)


#: Config keys renamed in 0.2 (old key -> new key); the old ones are read for one release.
RENAMED_KEYS = {
    "track.absent_min_similarity": "presence.min_similarity",
    "track.absent_min_score": "presence.min_score",
}


#: Config keys removed in 0.2 with the experiments they served, which no preset turned on
#: (candidate selection, the other objects' positives as negatives, guidance in the refinement
#: steps, the memory bank and part prototypes; docs/experiments.md has what they measured). Configs,
#: target files and run records written before still load: :func:`_migrate` drops these keys,
#: silently where the stored value kept the experiment off (key -> those values; None: a
#: setting of a removed experiment, of no effect without it), with a warning where it was on.
REMOVED_KEYS: dict[str, tuple[Any, ...] | None] = {
    "prior.others_as_negatives": (False,),
    "decode.guide_refinement": (False,),
    "decode.select": ("last",),
    "decode.select_prior_weight": None,
    "decode.select_contrast_weight": None,
    "memory.bank": (0,),
    "memory.min_score": None,
    "memory.stride": None,
    "memory.parts": (0, 1),
}


def _renamed(key: str) -> str:
    """The current name of ``key`` (a warning when it is an old one)."""
    if key in RENAMED_KEYS:
        warnings.warn(
            f"config key {key!r} is now {RENAMED_KEYS[key]!r}; the old name stops working in "
            "the next release",
            FutureWarning,
            stacklevel=3,
        )
        return RENAMED_KEYS[key]
    return key


def _migrate(data: Any) -> Any:
    """A nested config dict with renamed keys moved to their current place and removed keys
    dropped (a new dict)."""
    if not isinstance(data, dict):
        return data
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for old in RENAMED_KEYS:
        section, name = old.split(".")
        if isinstance(data.get(section), dict) and name in data[section]:
            value = data[section].pop(name)
            new_section, new_name = _renamed(old).split(".")
            target = data.setdefault(new_section, {})
            if isinstance(target, dict):
                target.setdefault(new_name, value)
    sections = {f.name for f in fields(PerSAMConfig)}
    for key, off in REMOVED_KEYS.items():
        section, name = key.split(".")
        if not (isinstance(data.get(section), dict) and name in data[section]):
            continue
        value = data[section].pop(name)
        if off is not None and not any(_same(value, kept) for kept in off):
            warnings.warn(
                f"config key {key!r} was removed (an experiment no preset used); its value "
                f"{_shown(value)} is ignored",
                UserWarning,
                stacklevel=3,
            )
        if section not in sections and not data[section]:
            del data[section]  # a removed section, now empty
    return data


def _same(value: Any, kept: Any) -> bool:
    """Whether a stored ``value`` equals ``kept`` (of the same kind: ``1`` is not ``true``)."""
    return isinstance(value, bool) == isinstance(kept, bool) and value == kept


def valid_keys() -> list[str]:
    """All ``section.field`` keys of :class:`PerSAMConfig`."""
    return [
        f"{section.name}.{f.name}"
        for section in fields(PerSAMConfig)
        for f in fields(_field_type(PerSAMConfig, section.name))
    ]


def load_config(name_or_path: str | Path) -> PerSAMConfig:
    """Load a preset by name (``default``, ``paper_image``, ``paper_video``, ``fast``) or a file.

    A file may be partial: missing fields keep the dataclass defaults. Nothing of a file that
    is not a YAML mapping of settings (not text, not YAML, or no key of it a section) is quoted
    back in an error: it may be any file, e.g. one with secrets.
    """
    text = str(name_or_path)
    if text in PRESET_NAMES:
        source = resources.files("persam_video") / "presets" / f"{text}.yaml"
        label = f"preset {text!r}"
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(
                f"config {text!r} is neither a preset ({', '.join(PRESET_NAMES)}) nor a YAML file"
            )
        source, label = path, str(path)
    sections = ", ".join(f.name for f in fields(PerSAMConfig))
    not_settings = f"{label} is not a YAML mapping of settings (sections {sections})"
    try:
        data = load_yaml(source.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"{not_settings}: it is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config {label}: {exc}".splitlines()[0]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{not_settings}: invalid YAML{where}") from None
    except ConfigError as exc:
        raise ConfigError(f"config {label}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(not_settings)
    if not _names_a_section(data):
        if not all(isinstance(key, str) for key in data):
            raise ConfigError(f"{not_settings}: a key at its top level is not a name")
        raise ConfigError(not_settings)
    return PerSAMConfig.from_dict(data)


def _names_a_section(data: dict[Any, Any]) -> bool:
    """Whether a mapping read from a config file is empty or has a section among its keys (a
    mapping with none is not a config: its keys are not quoted back as unknown ones)."""
    names = {f.name for f in fields(PerSAMConfig)} | {key.split(".")[0] for key in REMOVED_KEYS}
    return not data or any(isinstance(key, str) and key in names for key in data)


class _NoAliasLoader(yaml.SafeLoader):
    """YAML's safe loader without anchors and aliases: a few hundred bytes of nested aliases
    expand to gigabytes (the "billion laughs"), and a config never needs them. Nor does it
    need deep nesting, which would exhaust Python's recursion limit: at most
    :data:`MAX_NESTING` levels."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(f"YAML aliases (*{event.anchor}) are not allowed in a config")
        depth = getattr(self, "_depth", 0)
        if depth >= MAX_NESTING:
            raise ConfigError(_too_deep())
        self._depth = depth + 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth = depth


def _too_deep() -> str:
    return f"lists and mappings nested deeper than {MAX_NESTING} levels are not allowed"


def load_yaml(text: str) -> Any:
    """Parse config YAML (safe types only, no aliases, at most :data:`MAX_NESTING` levels).

    Raises ``yaml.YAMLError`` for invalid YAML, :class:`ConfigError` for what it refuses
    (aliases, deep nesting, an integer too long for Python to read).
    """
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # a SafeLoader: no arbitrary objects
    except RecursionError:  # pragma: no cover - the nesting limit comes first
        raise ConfigError(_too_deep()) from None
    except ConfigError:
        raise
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ConfigError(f"a value cannot be read ({str(exc)[:MAX_SHOWN_VALUE]})") from None


def nesting_depth(value: Any) -> int:
    """Levels of lists and mappings in ``value`` (0 for a scalar), counted without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if isinstance(item, (dict, list, tuple)):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in children)
    return deepest


def load_json(text: str | bytes, **kwargs: Any) -> Any:
    """``json.loads`` for what a user gives (target metadata, manifest rows, run records):
    nesting deeper than :data:`MAX_NESTING` levels is a :class:`ConfigError` (never a
    ``RecursionError``); invalid JSON a ``json.JSONDecodeError`` as usual."""
    try:
        value = json.loads(text, **kwargs)
    except RecursionError:
        raise ConfigError(_too_deep()) from None
    if nesting_depth(value) > MAX_NESTING:
        raise ConfigError(_too_deep())
    return value


def save_config(config: PerSAMConfig, path: str | Path) -> None:
    """Write ``config`` as YAML (all fields)."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")


def field_docs() -> dict[str, str]:
    """``section.field`` -> its documentation (the ``#:`` comments above each field here)."""
    import inspect
    import re

    sections = {_field_type(PerSAMConfig, f.name).__name__: f.name for f in fields(PerSAMConfig)}
    docs, comment, section = {}, [], None
    for line in inspect.getsource(inspect.getmodule(PerSAMConfig)).splitlines():
        if match := re.match(r"class (\w+)", line):
            section, comment = sections.get(match.group(1)), []
        elif match := re.match(r"\s+#: ?(.*)", line):
            comment.append(match.group(1))
        elif (match := re.match(r"\s+(\w+): .+ = ", line)) and section is not None:
            docs[f"{section}.{match.group(1)}"] = " ".join(comment)
            comment = []
        elif line.strip():
            comment = []
    return docs


def describe_config(config: PerSAMConfig) -> str:
    """``config`` as YAML, every field preceded by a comment saying what it means."""
    docs = field_docs()
    lines = []
    for section, values in config.to_dict().items():
        lines.append(f"{section}:")
        for name, value in values.items():
            text = docs.get(f"{section}.{name}")
            if text:
                lines.extend(
                    textwrap.wrap(text, DOC_WIDTH, initial_indent="  # ", subsequent_indent="  # ")
                )
            dumped = yaml.safe_dump({name: value}, default_flow_style=True).strip()
            lines.append(f"  {dumped[1:-1]}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------- internals
def _field_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {_shown(data)}")
    keys = [key for key in data if not isinstance(key, str)]
    if keys:
        where = prefix.rstrip(".") or "the top level"
        raise ConfigError(
            f"config key {str(keys[0])[:40]!r} in {where} is not a name; "
            f"valid keys: {', '.join(valid_keys())}"
        )
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        key = prefix + unknown[0]
        close = difflib.get_close_matches(key, valid_keys(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"unknown config key {key!r}{hint}; valid keys: {', '.join(valid_keys())}"
        )
    kwargs = {}
    for name, value in data.items():
        kind = _field_type(cls, name)
        if is_dataclass(kind):
            kwargs[name] = _build(kind, value, prefix=f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(prefix + name, kind, value)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - all fields have defaults
        raise ConfigError(str(exc)) from exc


def _coerce(key: str, kind: Any, value: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin is Literal:
        choices = typing.get_args(kind)
        if value not in choices:
            raise ConfigError(
                f"{key} must be one of {', '.join(map(str, choices))}; got {_shown(value)}"
            )
        return value
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{key}: unsupported field type")  # pragma: no cover
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false; got {_shown(value)}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer; got {_shown(value)}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number; got {_shown(value)}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(f"{key} must be a finite number; got {_shown(value)}")
        return number
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string; got {_shown(value)}")
        return value
    raise ConfigError(f"{key}: unsupported field type {kind!r}")  # pragma: no cover


@dataclass(frozen=True)
class SpanRules:
    """When the frames where a target is present make a *span* (``find``; hysteresis), apart
    from :class:`PerSAMConfig`, which decides each frame."""

    #: Runs of at most this many absent frames inside a span are bridged: one bad frame (or
    #: two) does not split a span. Range: [0, 1000000].
    max_gap: int = 2
    #: A span needs at least this many present frames: a shorter blip is not a span.
    #: Range: [1, 1000000].
    min_frames: int = 3

    def __post_init__(self) -> None:
        _check_range("max_gap", self.max_gap, 0, MAX_FRAMES)
        _check_range("min_frames", self.min_frames, 1, MAX_FRAMES)

    def to_dict(self) -> dict[str, int]:
        """The rules as JSON-ready values."""
        return dataclasses.asdict(self)


def _check_range(
    key: str, value: float, low: float | None, high: float | None, *, low_open: bool = False
) -> None:
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and value > high
    if below or above:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        bracket = "(" if low_open else "["
        raise ConfigError(f"{key} must be in {bracket}{lo}, {hi}]; got {_shown(value)}")


#: How values are quoted back in errors: short, and nested structures cut (never a
#: ``RecursionError``, never a line of thousands of characters).
_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = _SHOWN.maxlong = MAX_SHOWN_VALUE


def _shown(value: Any) -> str:
    """``repr(value)`` for an error message, at most about :data:`MAX_SHOWN_VALUE` characters."""
    return _SHOWN.repr(value)


__all__ = [
    "PRESET_NAMES",
    "ConfigError",
    "DecodeConfig",
    "FinetuneConfig",
    "KeyframesConfig",
    "PerSAMConfig",
    "PresenceConfig",
    "PriorConfig",
    "SpanRules",
    "TrackConfig",
    "load_config",
    "save_config",
    "valid_keys",
]
