"""The video tracker: PerSAM per frame, per-object state, momentum, occlusion, fusion.

Data flows one way: frames -> SAM features (once per frame, shared by all objects) -> PerSAM for
every object (:mod:`persam_video.persam`, the same code as image mode) -> fusion into one label
map -> per-object state update. :class:`~persam_video.video.state.TrackState` holds everything a
video needs between frames, so several videos can be tracked with one :class:`VideoTracker`.

With ``keyframes`` active in the config (``mode: auto`` or an ``interval`` above 1), only the
keyframes go through that step; every other frame gets the previous frame's masks carried along
the optical flow (:mod:`persam_video.video.flow`, :mod:`persam_video.video.keyframes`) through
:meth:`VideoTracker.step_propagated`, which keeps the per-object state consistent without the
encoder. Only the previous frame (gray) and its labels are kept: memory does not grow.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from segment_anything.modeling import Sam
from torch import Tensor

from persam_video.config import PerSAMConfig
from persam_video.labels import LabelMap, check_object_id
from persam_video.persam.api import PerSAM, Target, check_image
from persam_video.persam.cascade import ExtraPrompt, Prediction
from persam_video.persam.encoder import FrameEncoder
from persam_video.persam.features import LOW_RES_SCALE, FrameFeatures
from persam_video.persam.geometry import low_res_box, mask_box, mask_to_low_res
from persam_video.video.affinity import propagate_logits
from persam_video.video.flow import dense_flow, propagate, to_gray, warp_low_res
from persam_video.video.guards import guard_predictions
from persam_video.video.keyframes import keyframe_due, rekey_reason
from persam_video.video.rules import (
    Hysteresis,
    at_border,
    box_center,
    expand_box,
    fuse,
    hysteresis_step,
    is_absent,
    momentum_update,
    should_update,
)
from persam_video.video.state import FrameResult, ObjectResult, ObjectState, TrackState


# --------------------------------------------------------------------------- tracker
class VideoTracker:
    """Track the objects of a first-frame mask through a video with PerSAM.

    >>> tracker = VideoTracker(load_sam("vit_b"), PerSAMConfig.default())
    >>> for result in tracker.track(frames, first_labels):
    ...     result.labels  # (H, W) uint8 label map
    """

    def __init__(
        self,
        sam: Sam,
        config: PerSAMConfig | None = None,
        encoder: FrameEncoder | None = None,
        *,
        progress: bool = False,
    ) -> None:
        self.persam = PerSAM(sam, config, encoder, progress=progress)
        if self.config.keyframes.active and self.persam.encoder.batch_size > 1:
            raise ValueError(
                "keyframes (--keyframes N|auto) encode one frame at a time; use --batch-frames 1"
            )

    @property
    def config(self) -> PerSAMConfig:
        return self.persam.config

    @property
    def sam(self) -> Sam:
        return self.persam.sam

    def track(
        self, frames: Iterable[np.ndarray], first_labels: np.ndarray | LabelMap
    ) -> Iterator[FrameResult]:
        """Yield a :class:`FrameResult` per frame; the first frame's result is its annotation.

        Args:
            frames: (H, W, 3) uint8 RGB frames, or objects with ``rgb``, ``index`` and ``time``
                attributes (as yielded by :func:`persam_video.io.open_source`).
            first_labels: (H, W) uint8 label map of the first frame (0 background, 1..K objects),
                or a :class:`~persam_video.labels.LabelMap` already checked.
        """
        if self.config.keyframes.active:

            def begin(rgb: np.ndarray, index: int, time: float | None) -> Any:
                return self.start(rgb, first_labels, index=index, time=time)

            yield from self.track_keyframes(frames, begin)
            return
        state: TrackState | None = None
        for rgb, index, time, feats in self._encoded(_frames(frames)):
            if state is None:
                state, result = self.start(rgb, first_labels, index=index, time=time, feats=feats)
            else:
                result = self._step_encoded(state, rgb, feats, index=index, time=time)
            yield result

    def track_targets(
        self,
        frames: Iterable[np.ndarray],
        targets: list[Target],
        object_ids: list[int] | None = None,
    ) -> Iterator[FrameResult]:
        """Find saved targets in every frame (no annotated frame); yield a result per frame.

        Object ``i`` gets id ``object_ids[i]`` (default ``i + 1``); its mask is empty on frames
        where it is not confidently found.
        """
        ids = object_ids if object_ids is not None else list(range(1, len(targets) + 1))
        if len(ids) != len(targets) or not targets:
            raise ValueError(f"need one object id per target, got {len(ids)} for {len(targets)}")
        ids = [check_object_id(i) for i in ids]
        if self.config.keyframes.active:

            def begin(rgb: np.ndarray, index: int, time: float | None) -> Any:
                state = _target_state(rgb, targets, ids)
                return state, self.step(state, rgb, index=index, time=time)

            yield from self.track_keyframes(frames, begin)
            return
        state: TrackState | None = None
        for rgb, index, time, feats in self._encoded(_frames(frames)):
            if state is None:
                state = _target_state(rgb, targets, ids)
            yield self._step_encoded(state, rgb, feats, index=index, time=time)

    def track_keyframes(
        self,
        frames: Iterable[Any],
        begin: Callable[[np.ndarray, int, float | None], tuple[TrackState, FrameResult]],
    ) -> Iterator[FrameResult]:
        """The keyframe loop: SAM on the keyframes (``begin`` on the first frame, then
        :meth:`step`), the flow-carried masks of the frame before on the others."""
        cfg = self.config.keyframes
        state: TrackState | None = None
        prev_gray: np.ndarray | None = None
        prev_labels: np.ndarray | None = None
        since_key = 0
        key_areas: dict[int, int] = {}
        for rgb, index, time in _frames(frames):
            if state is None:
                state, result = begin(rgb, index, time)
                gray = to_gray(result.frame)
            else:
                rgb = self._check_frame(state, rgb, index)
                gray = to_gray(rgb)
                since_key += 1
                key, reason = keyframe_due(cfg, since_key)
                carried = None
                if not key:
                    carried = propagate(
                        prev_gray,
                        gray,
                        prev_labels,
                        fb_threshold=cfg.fb_threshold,
                        preset=cfg.flow_preset,
                        drop=cfg.drop_inconsistent,
                    )
                    if cfg.mode == "auto":
                        reason = rekey_reason(cfg, carried, key_areas)
                        key = reason is not None
                if key or carried is None:
                    result = self.step(state, rgb, index=index, time=time)
                    result.rekey = reason
                else:
                    result = self.step_propagated(
                        state, rgb, carried.labels, index=index, time=time
                    )
            if result.keyframe:
                since_key = 0
                key_areas = {o.obj_id: o.area for o in result.objects}
            prev_gray, prev_labels = gray, result.labels
            yield result

    def step_propagated(
        self,
        state: TrackState,
        frame: np.ndarray,
        labels: np.ndarray,
        *,
        index: int,
        time: float | None = None,
    ) -> FrameResult:
        """A frame that skips SAM: its masks are ``labels``, e.g. carried from the frame before
        by :func:`persam_video.video.flow.propagate`.

        Args:
            state: the video's state; per object, ``present`` and ``box`` (the next keyframe's
                box prompt) follow the carried mask, the embedding and the reference area stay
                as they were (no momentum update without SAM's features and score).
            frame: (H, W, 3) uint8 RGB frame.
            labels: (H, W) uint8 label map of the frame (ids not in ``state`` become background).

        Returns:
            A :class:`FrameResult` with ``keyframe`` False; each object's ``score`` and
            ``peak_similarity`` are NaN and ``propagated`` is True.
        """
        frame = self._check_frame(state, frame, index)
        labels = np.asarray(labels, dtype=np.uint8)
        if labels.shape != tuple(state.frame_size):
            raise ValueError(f"labels {labels.shape} for frames of size {state.frame_size}")
        state.frames_seen += 1
        labels = np.where(np.isin(labels, state.object_ids), labels, 0).astype(np.uint8)
        results = []
        for obj in state.objects:
            mask = labels == obj.obj_id
            area = int(mask.sum())
            obj.present = area > 0
            obj.box = _box_tuple(mask_box(torch.from_numpy(mask))) if obj.present else None
            results.append(
                ObjectResult(
                    obj_id=obj.obj_id,
                    present=obj.present,
                    score=math.nan,
                    area=area,
                    bbox=_int_box(obj.box),
                    peak_similarity=math.nan,
                    propagated=True,
                )
            )
        return FrameResult(index, time, labels, results, frame, keyframe=False)

    def _encoded(
        self, frames: Iterator[tuple[np.ndarray, int, float | None]]
    ) -> Iterator[tuple[np.ndarray, int, float | None, FrameFeatures | None]]:
        """Frames with their features when the encoder batches frames (else None: encoded later).

        Batches never hold frames of different sizes: a size change starts a new batch, and the
        frame of another size fails in :meth:`step`.
        """
        size = self.persam.encoder.batch_size
        if size == 1:
            for rgb, index, time in frames:
                yield rgb, index, time, None
            return
        batch: list[tuple[np.ndarray, int, float | None]] = []
        for item in frames:
            if batch and (len(batch) == size or item[0].shape != batch[0][0].shape):
                yield from self._flush(batch)
                batch = []
            batch.append((check_image(item[0]), item[1], item[2]))
        yield from self._flush(batch)

    def _flush(
        self, batch: list[tuple[np.ndarray, int, float | None]]
    ) -> Iterator[tuple[np.ndarray, int, float | None, FrameFeatures | None]]:
        if not batch:
            return
        feats = self.persam.encoder.encode_many([rgb for rgb, _, _ in batch])
        for (rgb, index, time), f in zip(batch, feats, strict=True):
            yield rgb, index, time, f

    def _step_encoded(
        self,
        state: TrackState,
        rgb: np.ndarray,
        feats: FrameFeatures | None,
        *,
        index: int,
        time: float | None,
    ) -> FrameResult:
        if feats is None:
            return self.step(state, rgb, index=index, time=time)
        if rgb.shape[:2] != state.frame_size:
            raise ValueError(
                f"frame {index} has size {rgb.shape[:2]}, the video {state.frame_size}"
            )
        with torch.inference_mode():
            return self.step_features(state, feats, rgb, index=index, time=time)

    @torch.inference_mode()
    def start(
        self,
        frame: np.ndarray,
        labels: np.ndarray | LabelMap,
        *,
        index: int = 0,
        time: float | None = None,
        feats: FrameFeatures | None = None,
    ) -> tuple[TrackState, FrameResult]:
        """Personalize on the annotated frame; return the state and that frame's result."""
        frame = check_image(frame)
        annotation = LabelMap.check(labels, frame.shape[:2])
        if feats is None:
            feats = self.persam.encode(frame)
        objects = []
        results = []
        for obj_id in annotation.ids:
            mask = annotation.mask(obj_id)
            try:
                embedding = self.persam.embed(feats, mask)
            except ValueError as exc:
                raise ValueError(f"object {obj_id} of the first mask: {exc}") from None
            obj, finetune_info = self._new_object(feats, obj_id, embedding, mask)
            objects.append(obj)
            box, area = obj.box, obj.reference_area
            results.append(
                ObjectResult(
                    obj_id=obj_id,
                    present=True,
                    score=1.0,
                    area=area,
                    bbox=_int_box(box),
                    peak_similarity=float("nan"),
                    finetune=finetune_info,
                )
            )
        state = TrackState(objects=objects, frame_size=frame.shape[:2], frames_seen=1)
        self._keep_previous(state, feats, frame)
        return state, FrameResult(index, time, annotation.without_void(), results, frame)

    @torch.inference_mode()
    def step(
        self, state: TrackState, frame: np.ndarray, *, index: int, time: float | None = None
    ) -> FrameResult:
        """Track every object of ``state`` on the next frame and update the state."""
        frame = self._check_frame(state, frame, index)
        return self.step_features(state, self.persam.encode(frame), frame, index=index, time=time)

    @staticmethod
    def _check_frame(state: TrackState, frame: np.ndarray, index: int) -> np.ndarray:
        frame = check_image(frame)
        if frame.shape[:2] != state.frame_size:
            raise ValueError(
                f"frame {index} has size {frame.shape[:2]}, the video {state.frame_size}"
            )
        return frame

    def step_features(
        self,
        state: TrackState,
        feats: FrameFeatures,
        frame: np.ndarray,
        *,
        index: int,
        time: float | None = None,
        annotations: dict[int, np.ndarray] | None = None,
    ) -> FrameResult:
        """:meth:`step` on features already computed (for pipelines that batch the encoder).

        ``annotations`` maps object ids to (H, W) bool masks the user gave for this frame: an
        id not in ``state`` is added (seeded here), a tracked one is re-seeded (its mask on this
        frame is the annotation, its box and reference area restart from it, its embedding is
        the annotation's and joins the average of its annotations that anchors the momentum
        update). The other objects are tracked as usual; annotated pixels are theirs no more.

        The phases, in order: PerSAM and the video rules on its masks (:meth:`_predict`), found
        or not (:meth:`_found`), the absence state (:meth:`_advance_hysteresis`), one label map
        (:meth:`_fuse`), the annotated objects seeded (:meth:`_seed`), each tracked object's
        state updated from its fused mask (:meth:`_follow`) and its result.
        """
        state.frames_seen += 1
        annotated = self._check_annotations(annotations, state.frame_size, index)
        tracked = [o for o in state.objects if o.obj_id not in annotated]
        if not tracked and not annotated:
            empty = np.zeros(state.frame_size, np.uint8)
            return FrameResult(index, time, empty, [], frame)
        before = {o.obj_id: o.hysteresis for o in tracked}
        preds = self._predict(state, feats, frame, tracked) if tracked else []
        found = self._found(state, tracked, preds)
        kept = self._advance_hysteresis(tracked, found)
        fused = self._fuse(state, feats, tracked, preds, kept, annotated)
        results = {
            obj_id: self._seed(state, feats, obj_id, annotation, index)
            for obj_id, annotation in sorted(annotated.items())
        }
        for obj, pred, ok, keep in zip(tracked, preds, found, kept, strict=True):
            mask = fused == obj.obj_id
            area = int(mask.sum())
            updated = self._follow(state, feats, obj, pred, mask, area, found=ok, kept=keep)
            results[obj.obj_id] = _tracked_result(obj, pred, area, updated, before[obj.obj_id])
        self._keep_previous(state, feats, frame)
        ordered = [results[o.obj_id] for o in state.objects]
        return FrameResult(index, time, fused.cpu().numpy(), ordered, frame)

    def _predict(
        self,
        state: TrackState,
        feats: FrameFeatures,
        frame: np.ndarray,
        tracked: list[ObjectState],
    ) -> list[Prediction]:
        """PerSAM on this frame for the K ``tracked`` objects (K >= 1), with their temporal
        prompts, then the video rules on its masks (the jump guard and detached parts).

        Args:
            feats: the frame's features.
            frame: (H, W, 3) uint8 RGB frame (read by the flow temporal prior).
            tracked: the objects to find, each with its (C,) embedding, mask weights, box and
                (1, 4h, 4w) previous logits.

        Returns:
            K :class:`Prediction` objects in the order of ``tracked``, each with its (H, W)
            bool ``mask``, (H, W) float ``mask_logits`` and (1, 4h, 4w) ``low_res_logits``.
        """
        targets = [Target(o.embedding, o.mask_weights) for o in tracked]
        backward = self._backward_flow(state, frame, tracked)
        prompts = [self._prompt(o, state, feats, backward) for o in tracked]
        preds = self.persam.segment_features(feats, targets, prompts)
        return guard_predictions(self.sam, feats, preds, prompts, self.config)

    def _found(
        self, state: TrackState, tracked: list[ObjectState], preds: list[Prediction]
    ) -> list[bool]:
        """Per tracked object, whether its prediction counts as found on this frame: not
        absent (:func:`is_absent`) and, for an object lost while leaving the view, entering
        through the border (:meth:`_may_reenter`). Reads the state as the frame before left it.
        """
        cfg, presence = self.config.track, self.config.presence
        return [
            not is_absent(p, cfg, presence, search=state.from_targets)
            and self._may_reenter(o, p, state.frame_size)
            for o, p in zip(tracked, preds, strict=True)
        ]

    def _advance_hysteresis(self, tracked: list[ObjectState], found: list[bool]) -> list[bool]:
        """Move each tracked object's absence state (``hysteresis``, and ``exited``: lost while
        leaving the view) on by this frame's ``found``; return per object whether it is kept:
        found, or not found for fewer than ``track.lost_after`` frames in a row."""
        cfg = self.config.track
        for obj, ok in zip(tracked, found, strict=True):
            was = obj.hysteresis
            obj.hysteresis = hysteresis_step(was, ok, cfg.lost_after, cfg.reacquire_after)
            if not was.lost and obj.hysteresis.lost:
                obj.exited = obj.leaving
            elif not obj.hysteresis.lost:
                obj.exited = False
        return [not o.hysteresis.lost for o in tracked]

    def _fuse(
        self,
        state: TrackState,
        feats: FrameFeatures,
        tracked: list[ObjectState],
        preds: list[Prediction],
        kept: list[bool],
        annotated: dict[int, np.ndarray],
    ) -> Tensor:
        """The frame's (H, W) uint8 label map (on the model's device): the (H, W) logits of the
        kept predictions fused (:func:`fuse`), then the (H, W) bool ``annotated`` masks painted
        over it in id order."""
        present_ids = [o.obj_id for o, keep in zip(tracked, kept, strict=True) if keep]
        logits = [p.mask_logits for p, keep in zip(preds, kept, strict=True) if keep]
        if logits:
            fused = fuse(torch.stack(logits), present_ids, self.sam.mask_threshold)
        else:
            fused = torch.zeros(state.frame_size, dtype=torch.uint8, device=feats.embedding.device)
        for obj_id, mask in sorted(annotated.items()):
            fused[torch.from_numpy(mask).to(fused.device)] = obj_id
        return fused

    def _follow(
        self,
        state: TrackState,
        feats: FrameFeatures,
        obj: ObjectState,
        pred: Prediction,
        mask: Tensor,
        area: int,
        *,
        found: bool,
        kept: bool,
    ) -> bool:
        """Update a tracked object's state from its part of the fused label map.

        Args:
            pred: its prediction on this frame (its low-resolution logits become the next
                frame's expected region, its score gates the momentum update).
            mask: (H, W) bool tensor, its pixels in the fused label map; ``area`` their count.
            found: whether ``pred`` counted as found (:meth:`_found`).
            kept: whether the object is kept after the hysteresis (:meth:`_advance_hysteresis`).

        Returns:
            Whether its embedding got the momentum update from ``mask``.
        """
        cfg = self.config.track
        box = _box_tuple(mask_box(mask)) if kept else None
        obj.present = kept and area > 0
        # On a kept frame not found with an empty mask, the previous box stays the prompt.
        obj.box = box if obj.present else (obj.box if kept and not found else None)
        obj.previous_logits = pred.low_res_logits if kept else None
        obj.steady = obj.steady and found and not pred.jumped
        obj.leaving = self._leaving(obj, area, state.frame_size)
        updated = False
        if found and obj.present and obj.reference_area is None:  # first sighting (target)
            obj.reference_area = area
        elif found and obj.present and should_update(pred.score, area, obj.reference_area, cfg):
            updated = self._update_embedding(obj, feats, mask)
            if updated:
                obj.reference_area = area
        return updated

    @staticmethod
    def _check_annotations(
        annotations: dict[int, np.ndarray] | None, size: tuple[int, int], index: int
    ) -> dict[int, np.ndarray]:
        checked = {}
        for obj_id, mask in (annotations or {}).items():
            obj_id = check_object_id(obj_id)
            mask = np.asarray(mask)
            if mask.shape != tuple(size):
                raise ValueError(
                    f"the mask of object {obj_id} on frame {index} is {mask.shape}, the frames "
                    f"{tuple(size)} (H, W)"
                )
            checked[obj_id] = mask.astype(bool)
        return checked

    def _new_object(
        self, feats: FrameFeatures, obj_id: int, embedding: Tensor, mask: np.ndarray
    ) -> tuple[ObjectState, dict[str, Any] | None]:
        """The state of an object annotated by an (H, W) bool ``mask`` on a frame with
        ``feats`` (its (C,) target ``embedding`` already computed), and PerSAM-F's training
        record when fine-tuning is on."""
        weights, finetune_info = None, None
        if self.config.finetune.enabled:
            tuned = self.persam.finetune(Target(embedding), [(feats, mask)])
            weights, finetune_info = tuned.weights, tuned.info()
        obj = ObjectState(
            obj_id=obj_id,
            first_embedding=embedding.clone(),
            embedding=embedding,
            box=_box_tuple(mask_box(torch.from_numpy(mask))),
            reference_area=int(mask.sum()),
            mask_weights=weights,
            previous_logits=self._annotation_logits(feats, mask),
        )
        return obj, finetune_info

    def _seed(
        self, state: TrackState, feats: FrameFeatures, obj_id: int, mask: np.ndarray, index: int
    ) -> ObjectResult:
        """Add object ``obj_id`` to ``state`` from an (H, W) bool mask, or re-seed it."""
        try:
            embedding = self.persam.embed(feats, mask)
        except ValueError as exc:
            raise ValueError(f"object {obj_id} on frame {index}: {exc}") from None
        box = _box_tuple(mask_box(torch.from_numpy(mask)))
        area = int(mask.sum())
        existing = {o.obj_id: o for o in state.objects}.get(obj_id)
        finetune_info = None
        if existing is None:
            obj, finetune_info = self._new_object(feats, obj_id, embedding, mask)
            state.objects.append(obj)
            state.objects.sort(key=lambda o: o.obj_id)
        else:
            existing.annotations += 1
            anchor = existing.first_embedding
            existing.first_embedding = anchor + (embedding - anchor) / existing.annotations
            existing.embedding = embedding
            existing.box, existing.reference_area, existing.present = box, area, True
            existing.hysteresis = Hysteresis()
            existing.steady = True
            existing.exited = existing.leaving = False
            existing.previous_logits = self._annotation_logits(feats, mask)
        return ObjectResult(
            obj_id=obj_id,
            present=True,
            score=1.0,
            area=area,
            bbox=_int_box(box),
            peak_similarity=float("nan"),
            annotated=True,
            finetune=finetune_info,
        )

    def _may_reenter(self, obj: ObjectState, pred: Prediction, size: tuple[int, int]) -> bool:
        """Whether ``pred`` may count as found for ``obj`` under ``track.reenter_at_border``: an
        object that was lost while leaving the view comes back only through the frame's border."""
        cfg = self.config.track
        if not (cfg.reenter_at_border and obj.hysteresis.lost and obj.exited):
            return True
        return at_border(_box_tuple(mask_box(pred.mask)), size, cfg.border_margin)

    def _leaving(self, obj: ObjectState, area: int, size: tuple[int, int]) -> bool:
        """Whether ``obj``, as updated on this frame with ``area`` pixels, looks as if it is
        leaving the view: present, its box at the frame's border and its area below its
        reference (part of it is outside; a mask that leaked onto something at the border would
        have grown instead). Read before the reference area is updated from this frame."""
        if not obj.present or obj.reference_area is None:
            return False
        margin = self.config.track.border_margin
        return at_border(obj.box, size, margin) and area < obj.reference_area

    def _keep_previous(self, state: TrackState, feats: FrameFeatures, frame: np.ndarray) -> None:
        """Keep what the temporal prior needs of this frame for the next one."""
        prior = self.config.track.temporal_prior
        if prior == "affinity":
            state.previous_features = feats.embedding
        elif prior == "flow":
            state.previous_gray = to_gray(frame)

    def _backward_flow(
        self, state: TrackState, frame: np.ndarray, tracked: list[ObjectState]
    ) -> np.ndarray | None:
        """(H, W, 2) flow from ``frame`` back to the previous frame, when the flow temporal
        prior has something to carry (else None)."""
        cfg = self.config.track
        if (
            cfg.temporal_prior != "flow"
            or state.previous_gray is None
            or all(o.previous_logits is None for o in tracked)
        ):
            return None
        return dense_flow(to_gray(frame), state.previous_gray, cfg.flow_preset)

    def _prompt(
        self,
        obj: ObjectState,
        state: TrackState,
        feats: FrameFeatures,
        backward: np.ndarray | None = None,
    ) -> ExtraPrompt:
        """An object's prompts beyond its location prior: the previous frame's box (expanded)
        and optionally its centre, where it is expected (its previous logits, or those carried
        here by feature affinity or along the ``backward`` flow) and the temporal prior's mask
        prompt."""
        cfg = self.config.track
        box, expected = obj.box, obj.previous_logits
        carried = False  # whether ``expected`` was carried to this frame
        if (
            expected is not None
            and cfg.temporal_prior == "affinity"
            and state.previous_features is not None
        ):
            expected = propagate_logits(
                state.previous_features[0],
                feats.embedding[0],
                expected,
                cfg.affinity_radius,
                cfg.affinity_temperature,
            )
            carried = True
        elif expected is not None and backward is not None:
            expected = warp_low_res(expected, backward, feats)
            carried = True
        if carried:
            carried_box = low_res_box(self.sam, feats, expected)
            box = _box_tuple(carried_box) if carried_box is not None else box
        mask_prompt = expected if cfg.temporal_prior != "none" else None
        if not cfg.box_prompt or box is None:
            return ExtraPrompt(mask_prompt=mask_prompt, expected=expected)
        box = expand_box(box, cfg.box_margin, state.frame_size)
        points = (box_center(box),) if cfg.box_center_point else ()
        return ExtraPrompt(
            box=box,
            points=points,
            mask_prompt=mask_prompt,
            expected=expected,
            guard=obj.steady,
        )

    def _needs_expected(self) -> bool:
        """Whether anything uses where an object is expected (its previous logits)."""
        cfg = self.config
        return cfg.track.temporal_prior != "none" or cfg.prior.distractor_negatives > 0

    def _annotation_logits(self, feats: FrameFeatures, mask: np.ndarray) -> Tensor | None:
        """(1, 4h, 4w) low-resolution logits of an annotated (H, W) bool mask, when needed."""
        if not self._needs_expected():
            return None
        low = tuple(LOW_RES_SCALE * n for n in feats.grid_size)
        return mask_to_low_res(feats, torch.from_numpy(mask).to(feats.embedding.device), low)

    def _update_embedding(self, obj: ObjectState, feats: FrameFeatures, mask: Tensor) -> bool:
        try:
            observed = self.persam.embed(feats, mask.cpu().numpy())
        except ValueError:  # the mask covers no feature cell under the 'paper' rule
            return False
        cfg = self.config.track
        obj.embedding = momentum_update(
            obj.embedding, observed, obj.first_embedding, cfg.momentum, cfg.anchor
        )
        return True


def _target_state(rgb: np.ndarray, targets: list[Target], ids: list[int]) -> TrackState:
    """The state of a video searched for saved ``targets`` (object ``ids``), before frame 0."""
    objects = [ObjectState.from_target(i, t) for i, t in zip(ids, targets, strict=True)]
    return TrackState(objects, check_image(rgb).shape[:2], from_targets=True)


def _tracked_result(
    obj: ObjectState, pred: Prediction, area: int, updated: bool, before: Hysteresis
) -> ObjectResult:
    """A tracked object's result on this frame, once :meth:`VideoTracker._follow` updated it.

    Args:
        pred: its prediction (score, (N, 2) points and (N,) labels, (H, W) similarity).
        area: its pixels in the fused label map.
        updated: whether its embedding got the momentum update.
        before: its absence state before this frame (for the lost and reacquired events).
    """
    return ObjectResult(
        obj_id=obj.obj_id,
        present=obj.present,
        score=pred.score,
        area=area,
        bbox=_int_box(obj.box),
        peak_similarity=pred.peak_similarity,
        updated=updated,
        points=pred.points.cpu().numpy(),
        point_labels=pred.labels.cpu().numpy(),
        similarity=pred.similarity.float().cpu().numpy(),
        lost=not before.lost and obj.hysteresis.lost,
        reacquired=before.lost and not obj.hysteresis.lost,
    )


def _frames(frames: Iterable[Any]) -> Iterator[tuple[np.ndarray, int, float | None]]:
    """(rgb, index, time) of arrays or of ``Frame``-like objects (``rgb``, ``index``, ``time``)."""
    for position, item in enumerate(frames):
        yield (
            getattr(item, "rgb", item),
            getattr(item, "index", position),
            getattr(item, "time", None),
        )


def _box_tuple(box: Tensor | None) -> tuple[float, float, float, float] | None:
    return None if box is None else tuple(float(v) for v in box.tolist())  # type: ignore[return-value]


def _int_box(box: tuple[float, ...] | None) -> tuple[int, int, int, int] | None:
    return None if box is None else tuple(int(v) for v in box)  # type: ignore[return-value]
