"""Train a small SAM 2.1-architecture video tracker (transformers' ``Sam2VideoModel``) to track.

No real SAM 2 checkpoint can be downloaded on the project's machines, so the memory engine's
benchmarks need a tracker trained here: :func:`persam_video.memory.models.tiny_config` (a
1/1/2/1-block Hiera at 256 px, 128-wide decoder and memory attention, 64-channel memory; ~2 M
parameters), randomly initialised and trained on the procedural clips of
:mod:`persam_video.synthetic` (``"train"`` split only) to propagate a first-frame prompt through
the following frames with its memory. It is a benchmark model, not SAM 2.

Recipe (SAM 2's video training, scaled down):

- Every step tracks ``--clips-per-step`` short clips of ``--frames`` frames: a window of a
  procedural clip (half :func:`~persam_video.synthetic.make_clip`'s mixed clips, rendered 30
  frames long so that objects can leave the frame and come back, half the attribute families:
  occlusion, out of view, distractors, appearance/scale change, fast and camera motion) taken
  every 1-``--max-stride`` frames, played backwards half of the time. Up to ``--objects``
  objects visible on the window's first frame are tracked together (objects that vanish inside
  the window are preferred half of the time).
- The first frame prompts every object: its ground-truth mask half of the time (as ``track
  --mask`` does), else one positive click, a positive and a negative click, or a jittered box
  (so the decoder also learns to segment from clicks, which corrections and re-detection use).
  The other frames are tracked through transformers' own session code
  (``processor.init_video_session``, ``processor.add_inputs_to_inference_session``, then the
  model's undecorated ``forward`` per streamed frame, under ``torch.enable_grad``), so gradients
  flow through the stored memories and object pointers into every module. The modules stay in
  eval mode: transformers' ``forward`` needs the object scores that its training mode leaves
  out, and the memory attention's dropout is then off.
- The frames' image features are computed once per clip (one batch, with gradients) and given
  to the session frame by frame, as the memory engine does. ``--prompt-loss`` (off by default)
  adds a second task on them: every visible object on every frame prompted alone (no memory, as
  the engine's one-frame sessions for clicks and re-detection) with a click, a click and a
  negative click, or a jittered box, decoded in one batch. In the runs so far it drove the
  decoder to empty or prompt-independent masks within a few hundred steps, so it is off.
- Two departures from transformers' random init (both recorded in ``training.json``): the
  prompt encoder's point positional encoding is tied to the image's (:func:`tie_prompt_positions`:
  random init draws them independently, and a decoder trained from there ignores where a click
  is), and ``--mask-memory-gain`` scales the memory encoder's mask embedding once (with
  transformers' std-0.02 init the mask is ~1 % of what the memory attention reads, and a
  tracker trained from there gives every object the same mask); ``--reinit-memory`` instead
  draws the whole memory path again with PyTorch's default init.
- Losses on every supervised frame and object, from the mask decoder's raw outputs (taken with
  a forward hook, before the "object absent" gating): focal + dice (20 : 1) against the ground
  truth at ``--loss-size`` px, the best of the multimask outputs (SAM's rule) when the object is
  there; MSE between the predicted and actual IoU of each output; binary cross-entropy of the
  object score against "the object has a visible pixel here" (tracked frames only).
- AdamW, linear warmup then cosine decay (over ``--steps`` steps, or over ``--minutes`` of
  training time when that ends first: wall time, less any gap of more than 5 minutes between
  two steps, such as the process being stopped), gradient clipping.
- Every ``--val-every`` steps the weights are rounded to float16 and written as a model folder
  (exactly what :func:`~persam_video.memory.models.save_random_model` writes, with the trained
  weights, plus ``training.json``), loaded back with
  :func:`~persam_video.memory.models.load_memory_model` and run by the product's own
  :class:`~persam_video.memory.session.MemorySession` (re-detection off) on held-out ``"val"``
  clips, every object prompted with its first-frame mask: the mean J (IoU; a frame where the
  object is absent scores 1 when nothing is predicted) over frames 1.. is compared with the
  static baseline (the first mask copied to every frame). The best folder so far replaces
  ``--out`` atomically (a usable model exists at any moment); the curves go to ``--log``.

From the repository root::

    OMP_NUM_THREADS=1 PYTHONPATH=. python tools/train_memory_model.py \\
        --out benchmarks/models/suite-sam2 --log benchmarks/memory-model-training.json \\
        --state /tmp/suite-sam2.state.pt --minutes 100

``--resume`` continues from ``--state`` (weights, optimizer, step, curves, best J).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import shlex
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from persam_video.eval.metrics import region_similarity
from persam_video.memory.config import MemoryConfig
from persam_video.memory.models import load_memory_model, save_random_model, tiny_config
from persam_video.memory.session import MemorySession
from persam_video.synthetic import FAMILIES, SPLIT_SEED_RANGE, iter_clip, iter_family_clip
from persam_video.synthetic.families import FAMILY_FRAMES
from persam_video.synthetic.splits import split_rng

#: The name the memory engine knows this architecture by.
MODEL_NAME = "sam2.1_hiera_tiny"

# ----------------------------------------------------------------------------- data
#: Share of training clips that are make_clip's mixed clips (the rest: attribute families).
MIXED_SHARE = 0.5
#: Length the mixed clips are rendered at (>= 24 lets an object leave the frame and come back,
#: which happens 15-40 % into the clip).
MIXED_FRAMES = 30
#: Share of windows played backwards.
REVERSE_PROB = 0.5
#: An object is prompted only if it covers this share of the window's first frame.
MIN_PROMPT_AREA = 0.005
#: Share of clips where objects that vanish inside the window are chosen first.
PREFER_VANISHING = 0.5
#: First-frame prompt kinds and their probabilities.
PROMPT_KINDS = {"mask": 0.5, "point": 0.15, "point+neg": 0.15, "box": 0.2}
#: Box jitter: std as a fraction of the box side, capped at this fraction of the frame's side.
BOX_JITTER = 0.1
BOX_JITTER_CAP = 0.05
#: Tries to draw a window with a promptable object before giving up (never reached in practice).
MAX_DRAWS = 20

# ----------------------------------------------------------------------------- losses
FOCAL_WEIGHT, DICE_WEIGHT = 20.0, 1.0  # SAM: focal : dice = 20 : 1
IOU_WEIGHT = 1.0
SCORE_WEIGHT = 1.0
FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0
DICE_SMOOTH = 1.0

# ----------------------------------------------------------------------------- optimisation
ADAM_BETAS = (0.9, 0.999)
#: Longest gap between two steps (or around a validation) counted as training time, in seconds.
MAX_COUNTED_GAP = 300.0
MIN_LR_FRACTION = 0.01

# ----------------------------------------------------------------------------- validation
#: Val clips: the first half mixed clips (val seeds 0..), the rest family clips (val seeds 0..,
#: the families in turn).
VAL_MIXED_FRAMES = 40


# ============================================================================= data
@dataclass
class TrainClip:
    """A training window: frames (original size) and the tracked objects' masks."""

    name: str
    frames: list[np.ndarray]  # T frames (H, W, 3) uint8 RGB
    masks: np.ndarray  # (K, T, H, W) bool: the tracked objects on each frame


def render_window(
    rng: np.random.Generator, n_frames: int, max_stride: int
) -> tuple[str, list[np.ndarray], list[np.ndarray]]:
    """Frames and label maps of a random window of a random training clip."""
    stride = int(rng.integers(1, max_stride + 1))
    span = stride * (n_frames - 1) + 1
    seed = int(rng.integers(SPLIT_SEED_RANGE))
    frames: Iterator[tuple[np.ndarray, np.ndarray]]
    if rng.random() < MIXED_SHARE:
        length = max(MIXED_FRAMES, span)
        frames = iter_clip(seed, split="train", n_frames=length)
        name = f"mixed-{seed}"
    else:
        family = list(FAMILIES)[int(rng.integers(len(FAMILIES)))]
        length = max(FAMILY_FRAMES, span)
        frames = iter_family_clip(family, seed, split="train", n_frames=length)
        name = f"{family}-{seed}"
    start = int(rng.integers(length - span + 1))
    wanted = set(range(start, start + span, stride))
    images, labels = [], []
    for index, (image, label_map) in enumerate(frames):
        if index in wanted:
            images.append(image)
            labels.append(label_map)
        if index >= start + span - 1:
            break
    if rng.random() < REVERSE_PROB:
        images.reverse()
        labels.reverse()
    return f"{name}@{start}/{stride}", images, labels


def draw_clip(rng: np.random.Generator, n_frames: int, max_stride: int, objects: int) -> TrainClip:
    """A training window with 1..``objects`` objects visible enough on its first frame."""
    for _ in range(MAX_DRAWS):
        name, images, labels = render_window(rng, n_frames, max_stride)
        stack = np.stack(labels)
        first = stack[0]
        ids, counts = np.unique(first[first > 0], return_counts=True)
        candidates = [
            int(i) for i, n in zip(ids, counts, strict=True) if n >= MIN_PROMPT_AREA * first.size
        ]
        if not candidates:
            continue
        order = list(rng.permutation(candidates))
        if rng.random() < PREFER_VANISHING:
            vanishing = {i for i in candidates if not (stack == i).any((1, 2)).all()}
            order.sort(key=lambda i: i not in vanishing)  # stable: vanishing ones first
        chosen = [int(i) for i in order[:objects]]
        masks = np.stack([stack == i for i in chosen])
        return TrainClip(name, images, masks)
    raise RuntimeError(f"no promptable object in {MAX_DRAWS} training windows")


def random_pixel(rng: np.random.Generator, mask: np.ndarray) -> list[float]:
    """(x, y) of a random pixel of ``mask`` (pixel centres)."""
    ys, xs = np.nonzero(mask)
    k = int(rng.integers(len(xs)))
    return [float(xs[k]) + 0.5, float(ys[k]) + 0.5]


def jittered_box(rng: np.random.Generator, mask: np.ndarray) -> list[float]:
    """The mask's box (x0, y0, x1, y1), each side moved by SAM-style noise, inside the frame."""
    ys, xs = np.nonzero(mask)
    height, width = mask.shape
    box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)
    sides = np.array([box[2] - box[0], box[3] - box[1]] * 2)
    caps = BOX_JITTER_CAP * np.array([width, height] * 2)
    box += np.clip(rng.normal(0.0, BOX_JITTER * sides), -caps, caps)
    box = np.clip(box, 0, [width, height, width, height])
    if box[2] - box[0] < 2 or box[3] - box[1] < 2:  # jitter collapsed it: the exact box
        box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)
    return [float(v) for v in box]


def draw_prompt_kind(rng: np.random.Generator) -> str:
    kinds = list(PROMPT_KINDS)
    return kinds[int(rng.choice(len(kinds), p=list(PROMPT_KINDS.values())))]


# ============================================================================= losses
def mask_losses(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Focal + dice loss and actual IoU of each of (M, L, L) mask logits against the (L, L)
    soft ground truth; returns (M,) ``FOCAL_WEIGHT * focal + DICE_WEIGHT * dice`` and (M,)
    IoU of ``logits > 0`` against ``target > 0.5`` (no gradient)."""
    target = target.expand_as(logits)
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_true = prob * target + (1.0 - prob) * (1.0 - target)
    alpha = FOCAL_ALPHA * target + (1.0 - FOCAL_ALPHA) * (1.0 - target)
    focal = (alpha * (1.0 - p_true) ** FOCAL_GAMMA * ce).mean((-2, -1))
    inter = (prob * target).sum((-2, -1))
    dice = 1.0 - (2.0 * inter + DICE_SMOOTH) / (
        prob.sum((-2, -1)) + target.sum((-2, -1)) + DICE_SMOOTH
    )
    with torch.no_grad():
        pred, gt = logits > 0, target > 0.5
        iou = (pred & gt).sum((-2, -1)) / (pred | gt).sum((-2, -1)).clamp_min(1)
    return FOCAL_WEIGHT * focal + DICE_WEIGHT * dice, iou


class DecoderTap:
    """Records the mask decoder's outputs (masks, IoU predictions, tokens, object scores) of
    every call, with their gradients, before the model gates masks by the object score."""

    def __init__(self, model: Any) -> None:
        self.calls: list[tuple[Tensor, ...]] = []
        self.handle = model.mask_decoder.register_forward_hook(self._record)

    def _record(self, module: Any, inputs: Any, outputs: tuple[Tensor, ...]) -> None:
        self.calls.append(outputs)

    def take(self) -> list[tuple[Tensor, ...]]:
        calls, self.calls = self.calls, []
        return calls


def track_clip(
    model: Any,
    processor: Any,
    tap: DecoderTap,
    clip: TrainClip,
    rng: np.random.Generator,
    loss_size: int,
    stats: dict[str, list[float]],
    prompt_weight: float,
) -> Tensor:
    """Prompt the clip's objects on its first frame, track them through the other frames with
    gradients, and return the clip's loss (see the module's recipe), plus ``prompt_weight``
    times :func:`prompted_loss`."""
    forward = type(model).forward.__wrapped__  # forward without its @torch.inference_mode()
    height, width = clip.frames[0].shape[:2]
    pixels = processor(images=clip.frames, return_tensors="pt").pixel_values
    masks = torch.from_numpy(clip.masks)  # (K, T, H, W)
    targets = F.interpolate(masks.float(), size=(loss_size, loss_size), mode="area")
    present = masks.flatten(2).any(2)  # (K, T)
    obj_ids = list(range(1, len(clip.masks) + 1))
    kind = draw_prompt_kind(rng)
    session = processor.init_video_session(inference_device="cpu", dtype=torch.float32)
    for k, obj_id in enumerate(obj_ids):
        first = clip.masks[k, 0]
        if kind == "mask":
            processor.add_inputs_to_inference_session(
                session, frame_idx=0, obj_ids=obj_id, input_masks=first
            )
            continue
        points, labels, box = [random_pixel(rng, first)], [1], None
        if kind == "point+neg":
            points.append(random_pixel(rng, ~first))
            labels.append(0)
        if kind == "box":
            points, labels, box = [], [], jittered_box(rng, first)
        processor.add_inputs_to_inference_session(
            session,
            frame_idx=0,
            obj_ids=obj_id,
            input_points=[[points]] if points else None,
            input_labels=[[labels]] if points else None,
            input_boxes=None if box is None else [[box]],
            original_size=(height, width),
        )
    session.obj_with_new_inputs = list(obj_ids)

    mask_terms: list[Tensor] = []
    iou_terms: list[Tensor] = []
    score_terms: list[Tensor] = []
    ious: list[float] = []
    tap.take()
    with torch.enable_grad():
        # Every frame's image features at once; the session is given each frame's slice.
        vision = model.get_image_features(pixels, return_dict=True)
        feats, pos = vision.fpn_hidden_states, vision.fpn_position_encoding  # (HW, T, C) each
        for t in range(len(clip.frames)):
            session.cache.cache_vision_features(
                t,
                {
                    "vision_feats": [f[:, t : t + 1] for f in feats],
                    "vision_pos_embeds": [p[:, t : t + 1] for p in pos],
                },
            )
            forward(model, inference_session=session, frame=pixels[t], frame_idx=t, reverse=False)
            calls = tap.take()
            if t == 0 and kind == "mask":
                continue  # the mask is the output: nothing to learn on this frame
            if len(calls) != len(obj_ids):
                raise RuntimeError(f"{len(calls)} mask decoder calls for {len(obj_ids)} objects")
            for k, (low_res, iou_pred, _, score) in enumerate(calls):
                here = bool(present[k, t])
                score_terms.append(
                    F.binary_cross_entropy_with_logits(score.reshape(()), torch.tensor(float(here)))
                )
                if not here:
                    continue
                logits = F.interpolate(  # (1, 1, M, h, w) -> (M, L, L)
                    low_res[0], size=(loss_size, loss_size), mode="bilinear", align_corners=False
                )[0]
                loss, actual = mask_losses(logits, targets[k, t])
                best = int(loss.detach().argmin())
                mask_terms.append(loss[best])
                iou_terms.append(F.mse_loss(iou_pred.reshape(-1), actual))
                if t > 0:
                    ious.append(float(actual[int(iou_pred.reshape(-1).argmax())]))
        prompt_loss = (
            prompted_loss(model, tap, feats, clip, present, targets, rng, stats)
            if prompt_weight > 0
            else torch.zeros(())
        )
    zero = torch.zeros(())
    mask_loss = torch.stack(mask_terms).mean() if mask_terms else zero
    iou_loss = torch.stack(iou_terms).mean() if iou_terms else zero
    score_loss = torch.stack(score_terms).mean() if score_terms else zero
    stats["mask"].append(float(mask_loss.detach()))
    stats["iou_mse"].append(float(iou_loss.detach()))
    stats["score_bce"].append(float(score_loss.detach()))
    if ious:
        stats["train_j"].append(float(np.mean(ious)))
    stats["absent_share"].append(float(1.0 - present[:, 1:].float().mean()))
    tracked = mask_loss + IOU_WEIGHT * iou_loss + SCORE_WEIGHT * score_loss
    return tracked + prompt_weight * prompt_loss


def prompted_loss(
    model: Any,
    tap: DecoderTap,
    feats: list[Tensor],
    clip: TrainClip,
    present: Tensor,
    targets: Tensor,
    rng: np.random.Generator,
    stats: dict[str, list[float]],
) -> Tensor:
    """Segmentation from clicks or a box on every frame alone (no memory, as the memory
    engine's one-frame sessions do): one prompt of one kind per visible object and frame, all
    decoded in one batch from the frames' features; mask + IoU losses as on tracked frames."""
    kinds = [kind for kind in PROMPT_KINDS if kind != "mask"]
    weights = np.array([PROMPT_KINDS[kind] for kind in kinds])
    kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
    entries = [(k, t) for k, t in zip(*np.nonzero(present.numpy()), strict=True)]
    if not entries:
        return torch.zeros(())
    height, width = clip.masks.shape[-2:]
    size = model.config.image_size
    scale = np.array([size / width, size / height])
    points, labels = [], []
    for k, t in entries:
        mask = clip.masks[k, t]
        if kind == "box":
            box = np.array(jittered_box(rng, mask)).reshape(2, 2)
            points.append(box * scale)
            labels.append([2, 3])
            continue
        clicks, click_labels = [random_pixel(rng, mask)], [1]
        if kind == "point+neg":
            clicks.append(random_pixel(rng, ~mask))
            click_labels.append(0)
        points.append(np.array(clicks) * scale)
        labels.append(click_labels)
    frames = torch.tensor([t for _, t in entries])
    embeddings = [
        f[:, frames].permute(1, 2, 0).reshape(len(entries), -1, *hw)
        for f, hw in zip(feats, model.backbone_feature_sizes, strict=True)
    ]
    embeddings[-1] = embeddings[-1] + model.no_memory_embedding.reshape(1, -1, 1, 1)
    tap.take()
    model._single_frame_forward(
        image_embeddings=embeddings,
        input_points=torch.tensor(np.array(points), dtype=torch.float32)[:, None],
        input_labels=torch.tensor(labels, dtype=torch.int32)[:, None],
        multimask_output=kind == "point",
    )
    low_res, iou_pred = tap.take()[0][:2]  # (B, 1, M, h, w), (B, 1, M)
    loss_size = targets.shape[-1]
    logits = F.interpolate(
        low_res[:, 0], size=(loss_size, loss_size), mode="bilinear", align_corners=False
    )
    target = torch.stack([targets[k, t] for k, t in entries])[:, None]  # (B, 1, L, L)
    loss, actual = mask_losses(logits, target)  # (B, M) each
    mask_loss = loss.min(dim=1).values.mean()
    iou_loss = F.mse_loss(iou_pred[:, 0], actual)
    chosen = actual.gather(1, iou_pred[:, 0].detach().argmax(1, keepdim=True))
    stats["prompt_mask"].append(float(mask_loss.detach()))
    stats["prompt_j"].append(float(chosen.mean()))
    return mask_loss + IOU_WEIGHT * iou_loss


# ============================================================================= validation
@dataclass
class ValClip:
    name: str
    group: str  # "mixed" or the family
    frames: list[np.ndarray]
    labels: list[np.ndarray]


def val_clips(count: int) -> Iterator[ValClip]:
    """The held-out validation clips (split ``"val"``), rendered one at a time."""
    families = list(FAMILIES)
    n_mixed = (count + 1) // 2
    for i in range(count):
        if i < n_mixed:
            pairs = list(itertools.islice(iter_clip(i, split="val"), VAL_MIXED_FRAMES))
            group = "mixed"
        else:
            j = i - n_mixed
            group = families[j % len(families)]
            pairs = list(iter_family_clip(group, j // len(families), split="val"))
        yield ValClip(f"val-{group}-{i}", group, [p[0] for p in pairs], [p[1] for p in pairs])


def validate(folder: Path, count: int) -> dict[str, Any]:
    """Mean J of the model folder's tracking on ``count`` val clips (see the module), and of
    the static baseline, overall and per clip group."""
    memory_model = load_memory_model(MODEL_NAME, folder)
    per_group: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    absent_right: list[float] = []
    frames_done = 0
    start = time.perf_counter()
    for clip in val_clips(count):
        first = clip.labels[0]
        ids = [int(i) for i in np.unique(first) if i != 0]
        predicted: dict[int, np.ndarray] = {}
        session = MemorySession(memory_model, clip.frames, config=MemoryConfig(redetect=False))
        with session:
            session.add_labels(0, first)
            for frame_result in session.propagate("forward"):
                predicted[frame_result.index] = frame_result.labels
        truth = np.stack(clip.labels[1:])
        pred = np.stack([predicted[t] for t in range(1, len(clip.labels))])
        frames_done += len(clip.labels)
        for obj_id in ids:
            gt = truth == obj_id
            j_model = region_similarity(gt, pred == obj_id)
            j_static = region_similarity(gt, np.broadcast_to(first == obj_id, gt.shape))
            for group in ("all", clip.group):
                per_group[group]["model"].append(float(j_model.mean()))
                per_group[group]["static"].append(float(j_static.mean()))
            gone = ~gt.any((1, 2))
            absent_right += [float(v) for v in j_model[gone]]
    result: dict[str, Any] = {
        name: {
            "j_model": float(np.mean(values["model"])),
            "j_static": float(np.mean(values["static"])),
            "objects": len(values["model"]),
        }
        for name, values in sorted(per_group.items())
    }
    result["absent_frames"] = {
        "count": len(absent_right),
        "empty_predicted": float(np.mean(absent_right)) if absent_right else None,
    }
    result["clips"] = count
    result["frames"] = frames_done
    result["seconds"] = time.perf_counter() - start
    return result


# ============================================================================= saving
def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically (a temporary sibling, then a rename)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_model_folder(model: Any, config: Any, folder: Path, facts: dict[str, Any]) -> None:
    """Write the model as :func:`save_random_model` does (config, processor), with the trained
    weights rounded to float16 (the config keeps float32: that is the dtype they load at), and
    ``training.json``."""
    if folder.exists():
        shutil.rmtree(folder)
    save_random_model(folder, config)
    state = {
        name: value.detach().half() if value.is_floating_point() else value.detach()
        for name, value in model.state_dict().items()
    }
    model.save_pretrained(str(folder), state_dict=state)
    write_json(folder / "training.json", facts)
    for path in folder.iterdir():
        path.chmod(0o644)  # safetensors writes its file owner-only


def publish(candidate: Path, out: Path) -> None:
    """Put the folder ``candidate`` at ``out``, replacing what is there, without a moment where
    ``out`` holds a half-written model (the old folder is moved aside, then removed)."""
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(candidate, out)
    if old.exists():
        shutil.rmtree(old)


# ============================================================================= training
def learning_rate(progress: float, step: int, base: float, warmup: int) -> float:
    """Linear warmup over ``warmup`` steps, then cosine decay with ``progress`` in [0, 1] to
    ``MIN_LR_FRACTION * base``."""
    if step < warmup:
        return base * (step + 1) / warmup
    floor = MIN_LR_FRACTION * base
    return floor + (base - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: Any, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW; biases, norms and embeddings of one dimension are not decayed."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(
        [
            {"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ],
        lr=lr,
        betas=ADAM_BETAS,
    )


def recipe(args: argparse.Namespace) -> dict[str, Any]:
    """The training facts that define the run (recorded in the log and the model folder)."""
    return {
        "data": {
            "split": "train",
            "frames": args.frames,
            "max_stride": args.max_stride,
            "objects": args.objects,
            "clips_per_step": args.clips_per_step,
            "mixed_share": MIXED_SHARE,
            "mixed_frames": MIXED_FRAMES,
            "family_frames": FAMILY_FRAMES,
            "reverse_prob": REVERSE_PROB,
            "prefer_vanishing": PREFER_VANISHING,
            "prompt_kinds": PROMPT_KINDS,
        },
        "loss": {
            "focal": FOCAL_WEIGHT,
            "dice": DICE_WEIGHT,
            "iou_mse": IOU_WEIGHT,
            "object_score_bce": SCORE_WEIGHT,
            "loss_size": args.loss_size,
            "multimask": "best output",
            "prompted_frames_alone": args.prompt_loss,
        },
        "optimizer": {
            "kind": "AdamW",
            "lr": args.lr,
            "weight_decay": args.weight_decay,
            "warmup": args.warmup,
            "schedule": "cosine to 1% over --steps or --minutes, whichever ends first",
            "grad_clip": args.grad_clip,
            "steps": args.steps,
            "minutes": args.minutes,
        },
        "model": {
            "config": "persam_video.memory.models.tiny_config",
            "image_size": args.image_size,
            "init": str(args.init) if args.init else f"random (seed {args.seed})",
            "prompt_positions": "tied to the image's (see tie_prompt_positions)",
            "mask_memory_gain": args.mask_memory_gain,
            "memory_path_init": "PyTorch default" if args.reinit_memory else "as loaded",
        },
        "validation": {
            "split": "val",
            "clips": args.val_clips,
            "prompt": "every object's first-frame mask",
            "redetect": False,
        },
    }


def tie_prompt_positions(model: Any) -> None:
    """Give the prompt encoder's point positional encoding the image's random Fourier matrix.

    SAM encodes a click's position and the image's positions with one matrix (a real SAM 2
    checkpoint holds it twice, equal); transformers' random init draws the two buffers
    independently, so a click's encoding means nothing on the image and a decoder trained from
    that init ignores where the click is. Buffers are not trained: tied here, they stay tied."""
    with torch.no_grad():
        model.prompt_encoder.shared_embedding.positional_embedding.copy_(
            model.shared_image_embedding.positional_embedding
        )


def reinit_memory_path(model: Any) -> None:
    """Draw the memory encoder, the memory attention and the object-pointer projection again with
    PyTorch's default init (each module's own ``reset_parameters``: Kaiming-uniform weights)
    instead of transformers' std-0.02 normal: the mask then weighs in the memory as much as the
    image features do. The image encoder, prompt encoder and mask decoder keep their weights."""
    for part in (model.memory_encoder, model.memory_attention, model.object_pointer_proj):
        for module in part.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None when it is missing or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


class ActiveClock:
    """Seconds of training so far, a gap between two ticks counted as ``MAX_COUNTED_GAP`` at
    most: a process stopped for a while (SIGSTOP on a shared machine) or a suspended machine
    does not eat the ``--minutes`` schedule."""

    def __init__(self, elapsed: float = 0.0) -> None:
        self.elapsed = elapsed
        self.last = time.perf_counter()

    def tick(self) -> float:
        now = time.perf_counter()
        self.elapsed += min(now - self.last, MAX_COUNTED_GAP)
        self.last = now
        return self.elapsed


def train(args: argparse.Namespace) -> None:
    """The training loop (see the module); writes the log, the state and the best folder."""
    torch.manual_seed(args.seed)
    config = tiny_config(image_size=args.image_size)
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    template = out.with_name(f".{out.name}.template-{os.getpid()}")
    save_random_model(template, config, seed=args.seed)  # the model init and the processor
    loaded = load_memory_model(MODEL_NAME, args.init or template)  # eval mode: see the recipe
    model, processor = loaded.model, loaded.processor
    shutil.rmtree(template)
    tie_prompt_positions(model)
    if args.reinit_memory:
        reinit_memory_path(model)
    if args.mask_memory_gain != 1.0:
        with torch.no_grad():  # a stronger mask signal in the memory (see --mask-memory-gain)
            final = model.memory_encoder.mask_downsampler.final_conv
            final.weight.mul_(args.mask_memory_gain)
            final.bias.mul_(args.mask_memory_gain)
    if not hasattr(type(model).forward, "__wrapped__"):
        raise SystemExit("this transformers' Sam2VideoModel.forward has no __wrapped__")
    optimizer = make_optimizer(model, args.lr, args.weight_decay)
    rng = split_rng("train", args.seed)
    command = shlex.join(["python", "tools/train_memory_model.py", *sys.argv[1:]])
    n_params = sum(p.numel() for p in model.parameters())
    log: dict[str, Any] = {
        "tool": "tools/train_memory_model.py",
        "command": command,
        "seed": args.seed,
        "parameters": n_params,
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "machine": platform.platform(),
        "threads": args.threads,
        "recipe": recipe(args),
        "train": [],
        "validation": [],
        "best": None,
    }
    if args.init is not None:
        log["init"] = {"folder": str(args.init), "training": read_json(args.init / "training.json")}
        validation = (log["init"]["training"] or {}).get("validation") or {}
        if "all" in validation and args.init.resolve() == out.resolve():
            # the folder is --out: a new model replaces it only when it validates better
            log["best"] = {"step": "init", **validation["all"]}
    if args.log.exists() and not args.resume:  # keep the curves of the runs before
        previous = read_json(args.log) or {}
        log["previous_runs"] = [
            *previous.pop("previous_runs", []),
            {key: previous.get(key) for key in ("command", "recipe", "train", "validation")},
        ]
    step, elapsed_before = 0, 0.0
    if args.resume:
        state = torch.load(args.state, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        step, elapsed_before, log = state["step"], state["elapsed"], state["log"]
        log.setdefault("resumed", []).append(
            {"step": step, "command": command, "recipe_before": log["recipe"]}
        )
        log["command"], log["recipe"] = command, recipe(args)
        print(f"resumed at step {step} ({elapsed_before / 60:.1f} min)", flush=True)
    print(f"{MODEL_NAME} tiny: {n_params:,} parameters; {command}", flush=True)

    tap = DecoderTap(model)
    running: dict[str, list[float]] = defaultdict(list)
    clock = ActiveClock(elapsed_before)
    budget = math.inf if args.minutes is None else 60.0 * args.minutes
    last_print = time.perf_counter()
    validated = step  # a resumed state was validated when it was saved
    while True:
        elapsed = clock.tick()
        progress = max(step / args.steps, elapsed / budget)
        done = progress >= 1.0
        if step > validated and (step % args.val_every == 0 or done):
            validate_and_save(model, config, args, log, step, elapsed)
            save_state(args.state, model, optimizer, rng, step, clock.tick(), log)
            validated = step
            last_print = time.perf_counter()  # s_per_step leaves validation out
        if done:
            break
        lr = learning_rate(progress, step, args.lr, args.warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        for _ in range(args.clips_per_step):
            clip = draw_clip(rng, args.frames, args.max_stride, args.objects)
            loss = track_clip(
                model, processor, tap, clip, rng, args.loss_size, running, args.prompt_loss
            )
            (loss / args.clips_per_step).backward()
            running["loss"].append(float(loss.detach()))
        grad = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
        running["grad"].append(float(grad))
        step += 1
        if step % args.log_every == 0:
            now = time.perf_counter()
            entry = {
                "step": step,
                "wall_s": round(clock.tick(), 1),
                "time": round(time.time()),
                "lr": lr,
                "s_per_step": round((now - last_print) / args.log_every, 3),
                **{key: round(float(np.mean(v)), 5) for key, v in sorted(running.items())},
            }
            last_print = now
            log["train"].append(entry)
            running.clear()
            print(
                "  ".join(
                    f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in entry.items()
                ),
                flush=True,
            )
            write_json(args.log, log)
    write_json(args.log, log)
    print(f"done: {step} steps, best {log['best']}", flush=True)


def validate_and_save(
    model: Any, config: Any, args: argparse.Namespace, log: dict[str, Any], step: int, wall: float
) -> None:
    """Write the model as a candidate folder, validate what was written, keep it if best."""
    out: Path = args.out
    candidate = out.with_name(f".{out.name}.candidate-{os.getpid()}")
    facts = {
        "name": out.name,
        "model": MODEL_NAME,
        "tool": "tools/train_memory_model.py",
        "command": log["command"],
        "seed": args.seed,
        "steps": step,
        "train_minutes": round(wall / 60, 1),
        "parameters": log["parameters"],
        "weights": "float16 (config dtype float32: they load as float32)",
        "recipe": log["recipe"],
        "validation": None,
    }
    write_model_folder(model, config, candidate, facts)
    metrics = validate(candidate, args.val_clips)
    entry = {"step": step, "wall_s": round(wall, 1), **metrics}
    log["validation"].append(entry)
    best = log["best"]
    overall = metrics["all"]
    kept = best is None or not out.exists() or overall["j_model"] > best["j_model"]
    print(
        f"validation at step {step}: J model {overall['j_model']:.4f}  static "
        f"{overall['j_static']:.4f}  ({metrics['seconds']:.0f} s){'  best: saved' if kept else ''}",
        flush=True,
    )
    if kept:
        facts["validation"] = entry
        write_json(candidate / "training.json", facts)
        publish(candidate, out)
        log["best"] = {"step": step, "j_model": overall["j_model"], "j_static": overall["j_static"]}
    else:
        shutil.rmtree(candidate)
    write_json(args.log, log)


def save_state(
    path: Path | None,
    model: Any,
    optimizer: torch.optim.Optimizer,
    rng: np.random.Generator,
    step: int,
    elapsed: float,
    log: dict[str, Any],
) -> None:
    """What ``--resume`` continues from (written atomically)."""
    if path is None:
        return
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "step": step,
            "elapsed": elapsed,
            "log": log,
        },
        tmp,
    )
    os.replace(tmp, path)


# ============================================================================= command line
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("benchmarks/models/suite-sam2"),
        help="model folder (the best so far replaces it after each validation)",
    )
    parser.add_argument(
        "--log",
        type=Path,
        default=Path("benchmarks/memory-model-training.json"),
        help="training curves and validations (JSON, rewritten as training goes)",
    )
    parser.add_argument(
        "--state",
        type=Path,
        default=None,
        help="training state file for --resume (weights, optimizer, step), written at each "
        "validation; none by default",
    )
    parser.add_argument("--resume", action="store_true", help="continue from --state")
    parser.add_argument(
        "--init",
        type=Path,
        default=None,
        help="start from this model folder's weights (a fresh optimizer and schedule) instead "
        "of a random init; when it is --out, its recorded validation is the J to beat",
    )
    parser.add_argument("--steps", type=int, default=20000, help="training steps at most")
    parser.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="wall-clock length of the schedule: training ends (and the learning rate reaches "
        "its floor) after this many minutes, or after --steps, whichever comes first",
    )
    parser.add_argument("--seed", type=int, default=0, help="initial weights and training data")
    parser.add_argument("--threads", type=int, default=1, help="torch (and OpenCV) CPU threads")
    parser.add_argument("--frames", type=int, default=8, help="frames per training clip")
    parser.add_argument(
        "--max-stride", type=int, default=3, help="training clips take every 1..N-th frame"
    )
    parser.add_argument("--objects", type=int, default=2, help="objects tracked per clip, at most")
    parser.add_argument("--clips-per-step", type=int, default=1, help="clips per optimizer step")
    parser.add_argument("--image-size", type=int, default=256, help="model input size")
    parser.add_argument("--loss-size", type=int, default=128, help="mask loss resolution")
    parser.add_argument(
        "--prompt-loss",
        type=float,
        default=0.0,
        help="weight of the loss of clicks and boxes decoded on every frame alone (0: off)",
    )
    parser.add_argument(
        "--mask-memory-gain",
        type=float,
        default=1.0,
        help="multiply the memory encoder's mask embedding (the mask downsampler's last conv) by "
        "this once at the start: with transformers' init (std 0.02) the mask is a tiny part of "
        "the memory, which a tracker trained from it learns to ignore",
    )
    parser.add_argument(
        "--reinit-memory",
        action="store_true",
        help="draw the memory path again with PyTorch's default init at the start (see "
        "reinit_memory_path); with --init, the image encoder and decoder keep their training",
    )
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    parser.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay")
    parser.add_argument("--warmup", type=int, default=200, help="linear warmup steps")
    parser.add_argument("--grad-clip", type=float, default=1.0, help="gradient norm clipping")
    parser.add_argument("--val-every", type=int, default=300, help="validate every N steps")
    parser.add_argument("--val-clips", type=int, default=20, help="held-out val clips")
    parser.add_argument("--log-every", type=int, default=25, help="log every N steps")
    args = parser.parse_args(argv)
    if args.resume and args.state is None:
        parser.error("--resume needs --state")
    if args.frames < 2:
        parser.error("--frames must be at least 2")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(args.threads)
    cv2.setNumThreads(args.threads)
    train(args)


if __name__ == "__main__":
    main()
