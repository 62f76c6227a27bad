"""A prompting session on a memory tracker (SAM 2.1, EdgeTAM, the SAM 3 tracker).

The same prompts and directions as PerSAM's :class:`~persam_video.video.session.VideoSession`
(the rules are :class:`~persam_video.video.session.PromptedSession`'s):

* ``forward``: from the first prompted frame to the end; each prompt joins the tracker's memory
  as a conditioning frame when the pass reaches its frame (a correction on a later frame
  re-conditions the object from there on, as SAM 2's own clicks on a tracked frame do).
* ``backward``: the mirror image, from the last prompted frame back to frame 0.
* ``both``: the forward pass, then a backward pass from each object's first prompt, and from
  the frame where each saved target was first found (its mask there seeds the tracker), so a
  target is tracked both ways from where it is found.

Frames are streamed into a fresh transformers inference session per pass
(``model(inference_session=..., frame=..., frame_idx=...)``), and after each frame the session
forgets what the tracker will not look at again: the frame's pixels and the outputs of frames
beyond its memory window (``num_maskmem`` frames of memory, ``max_object_pointers_in_encoder``
object pointers); the prompted frames' outputs stay. Memory is flat in the video's length.

Clicks and boxes become masks right away, on their frame alone (a one-frame session of the same
model), so a prompt that makes nothing is refused before any tracking.

Re-detection (:class:`~persam_video.memory.config.MemoryConfig`): each object's target
embedding is taken from the tracker's own image features inside its prompt's mask; once the
tracker's object score has said "gone" on ``lost_after`` frames in a row, every new frame is
searched with PerSAM's location prior, and a confident match (its similarity peak, and the mask
the tracker makes of a click there on that frame alone, both stand out as the object did on its
prompt frame: :mod:`persam_video.memory.redetect`) prompts the tracker with that click.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from persam_video.io.frame import Frame
from persam_video.io.seekable import DEFAULT_CHUNK
from persam_video.io.streamed import StreamedFrames
from persam_video.labels import BACKGROUND_ID
from persam_video.memory.config import MemoryConfig
from persam_video.memory.guidance import decoder_guidance, decoder_inputs
from persam_video.memory.models import MemoryModel
from persam_video.memory.redetect import Reference, candidate_clicks, contrast_of, reference
from persam_video.memory.refine import refine_prompt
from persam_video.persam.api import Target
from persam_video.persam.prompts import PromptMask
from persam_video.video.session import (
    BACKWARD,
    FORWARD,
    Direction,
    Prompt,
    PromptedSession,
    SessionResult,
    Source,
)
from persam_video.video.state import ObjectResult

#: The memory engine's name in results.json.
MEMORY_ENGINE = "memory"


class MemorySession(PromptedSession):
    """Prompts on any frame of one video, propagated by a memory tracker.

    Args:
        model: the loaded memory tracker.
        source, fps, chunk: as :class:`~persam_video.video.session.PromptedSession`.
        config: re-detection settings (the defaults when None).
    """

    def __init__(
        self,
        model: MemoryModel,
        source: Source,
        *,
        fps: Any = None,
        chunk: int = DEFAULT_CHUNK,
        config: MemoryConfig | None = None,
    ) -> None:
        super().__init__(source, fps=fps, chunk=chunk)
        self.model = model
        self.config = config if config is not None else MemoryConfig()
        settings = model.model.config
        #: Frames whose outputs the tracker may still read (memory and object pointers).
        self.window = max(int(settings.num_maskmem), int(settings.max_object_pointers_in_encoder))

    def __enter__(self) -> MemorySession:
        return self

    def run_record(self) -> dict[str, Any]:
        """What results.json records of the engine: its name, device, memory window and
        re-detection settings."""
        return memory_record(self.model, self.config)

    # ------------------------------------------------------------------ prompts
    def _mask_from_prompt(
        self, frame: int, points: np.ndarray, labels: np.ndarray, box: Sequence[float] | None
    ) -> PromptMask:
        """The tracker's mask of the clicks and box on ``frame`` alone (a one-frame session)."""
        prompt = Prompt(
            frame,
            0,
            "points",
            points=tuple((float(x), float(y)) for x, y in points),
            point_labels=tuple(int(v) for v in labels.reshape(-1)),
            box=None if box is None else tuple(float(v) for v in box),  # type: ignore[arg-type]
        )
        with torch.inference_mode():
            mask, score = self._alone(self.model.pixels(self.frames.read(frame).rgb), prompt, None)
        return PromptMask(mask.numpy(), score, "single")

    def prompt_mask(
        self,
        frame: int,
        points: np.ndarray,
        labels: np.ndarray,
        box: Sequence[float] | None = None,
    ) -> PromptMask:
        """The tracker's mask of (N, 2) clicks (labels 1 positive, 0 negative) and an optional
        (x0, y0, x1, y1) box on ``frame`` alone, added to no prompt (what the app shows of a
        click before tracking)."""
        points = np.asarray(points, np.float64).reshape(-1, 2)
        return self._mask_from_prompt(frame, points, np.asarray(labels, np.int64), box)

    def _alone(self, pixels: torch.Tensor, prompt: Prompt, vision: Any) -> tuple[Tensor, float]:
        """The (H, W) bool mask and presence score (sigmoid of the object score) the tracker
        makes of ``prompt`` on its frame alone; ``vision``: the frame's image features when
        already computed."""
        logits, score = self._alone_logits(pixels, prompt, vision)
        return logits > 0, score

    def _alone_logits(
        self, pixels: torch.Tensor, prompt: Prompt, vision: Any
    ) -> tuple[Tensor, float]:
        """:meth:`_alone`'s (H, W) frame-size logits and presence score."""
        session = self._new_inference_session()
        if vision is not None:
            _cache_features(session, prompt.frame, vision)
        self._add_prompt(session, prompt, None)
        session.obj_with_new_inputs = [prompt.obj_id]
        output = self.model.model(
            inference_session=session, frame=pixels, frame_idx=prompt.frame, reverse=False
        )
        logits = self._frame_logits(output.pred_masks)[0]
        score = float(torch.sigmoid(output.object_score_logits.reshape(-1)[0]))
        return logits, score

    def add_target(self, obj_id: int, target: Target) -> None:
        """Search a saved target (made with this model: it carries its reference similarity)
        in every frame of the forward pass, as object ``obj_id``: from frame 0 it counts as
        lost, so each frame is searched until a confident match prompts the tracker (then it
        is tracked, and searched again whenever lost). With direction ``both`` it is also
        tracked backward from the frame where it was first found."""
        if target.reference_similarity is None:
            raise ValueError(
                f"the target of object {obj_id} was not made for the memory engine (it has no "
                "reference similarity); personalize it again with this --model"
            )
        super().add_target(obj_id, target)

    # ------------------------------------------------------------------ propagation
    def propagate(self, direction: Direction = "both") -> Iterator[SessionResult]:
        """Track the prompted objects; yield results in the order computed (see the module).

        Raises:
            ValueError: what :meth:`check_direction` refuses.
        """
        self.check_direction(direction)
        every = {
            frame: {p.obj_id: p for p in self.prompts if p.frame == frame}
            for frame in self.annotated_frames
        }
        found: dict[int, dict[int, np.ndarray]] = {}  # frame -> target -> its mask, first found
        if direction in (FORWARD, "both") or not every:
            frames = self.frames.forward(0 if self._targets else min(every))
            yield from self._pass(
                frames, every, reverse=False, keep_seeds=True, targets=True, found_at=found
            )
        if direction == BACKWARD and every:
            frames = self.frames.backward(max(every), 0, chunk=self.chunk)
            yield from self._pass(frames, every, reverse=True, keep_seeds=True)
        elif direction == "both":
            seeds: dict[int, dict[int, Prompt]] = {}
            for obj_id, frame in self.first_frames().items():
                seeds.setdefault(frame, {})[obj_id] = every[frame][obj_id]
            masks = {frame: dict(self._masks[frame]) for frame in seeds}
            for frame, targets in found.items():
                for obj_id, mask in targets.items():
                    seeds.setdefault(frame, {})[obj_id] = Prompt(frame, obj_id, "mask")
                    masks.setdefault(frame, {})[obj_id] = mask
            if seeds and max(seeds) > 0:
                frames = self.frames.backward(max(seeds), 0, chunk=self.chunk)
                yield from self._pass(frames, seeds, reverse=True, keep_seeds=False, masks=masks)

    def _targets_both_ways(self, direction: Direction) -> bool:
        """Whether saved targets are also tracked back from where they are found."""
        return bool(self._targets) and direction == "both"

    def in_frame_order(self, direction: Direction) -> bool:
        """As :meth:`PromptedSession.in_frame_order`; with saved targets, direction ``both``
        may also go back from where a target is found, so only ``forward`` is in order."""
        return super().in_frame_order(direction) and not self._targets_both_ways(direction)

    def expected_results(self, direction: Direction) -> int | None:
        """As :meth:`PromptedSession.expected_results`; None (not known before the run) with
        saved targets and direction ``both``: how far back they go depends on where they are
        found."""
        if self._targets_both_ways(direction):
            return None
        return super().expected_results(direction)

    def _check_engine(self, direction: Direction) -> None:
        if self._targets_both_ways(direction) and isinstance(self.frames, StreamedFrames):
            raise ValueError(
                "a streamed input cannot be tracked back from where a target is found: track "
                "it forward, or give a video file, a folder or a list of frames"
            )

    def _pass(
        self,
        frames: Iterator[Frame],
        prompts: dict[int, dict[int, Prompt]],
        *,
        reverse: bool,
        keep_seeds: bool,
        targets: bool = False,
        found_at: dict[int, dict[int, np.ndarray]] | None = None,
        masks: dict[int, dict[int, np.ndarray]] | None = None,
    ) -> Iterator[SessionResult]:
        """Stream ``frames`` through a fresh inference session, prompting each object on its
        frames of ``prompts`` (and searching the saved targets, with ``targets``). Without
        ``keep_seeds`` the objects prompted on a frame are left out of its result (the other
        pass yields them), and a frame with no other object yields nothing.

        Args:
            found_at: filled with each saved target's (H, W) bool mask on the frame where it
                is first found (frame -> object id -> mask).
            masks: the prompts' masks (frame -> object id -> mask); the session's by default.
        """
        masks = self._masks if masks is None else masks
        direction = BACKWARD if reverse else FORWARD
        session = self._new_inference_session()
        search = _Search(self.config)
        if targets:
            for obj_id, target in sorted(self._targets.items()):
                search.target(obj_id, target)
        for frame in frames:
            here = prompts.get(frame.index, {})
            with torch.inference_mode():
                pixels = self.model.pixels(frame.rgb)
                vision, features = self.model.features(pixels)
                _cache_features(session, frame.index, vision)  # the tracker reuses them
                for obj_id, prompt in sorted(here.items()):
                    mask = masks[frame.index][obj_id]
                    self._add_prompt(session, prompt, mask)
                    search.prompted(obj_id, features, torch.from_numpy(mask))
                waiting_before = set(search.waiting(list(session.obj_ids)))
                found = self._redetect(session, search, frame, pixels, vision, features, here)
                if here or found:  # every object prompted here is new input
                    session.obj_with_new_inputs = sorted({*here, *found})
                if session.get_obj_num() == 0:
                    waiting = search.waiting([])
                    empty = torch.zeros(0)
                    nothing = self._result(
                        frame, [], empty, empty, direction, here, True, waiting=waiting
                    )
                    if nothing is not None:  # saved targets not found yet: no object here
                        yield nothing
                    continue
                steering = {i: r for i, r in search.references.items() if i not in here}
                output = self._track(session, pixels, frame.index, reverse, steering, features)
                logits = self._frame_logits(output.pred_masks)
                presence = output.object_score_logits.reshape(-1)
                if self.config.refine:
                    inputs = (frame.index, pixels, vision, features)
                    self._refine(logits, presence, output.object_ids, here, search, inputs)
            self._forget(session, frame.index, reverse)
            ids = [int(i) for i in output.object_ids]
            waiting = search.waiting(ids)
            result = self._result(
                frame, ids, logits, presence, direction, here, keep_seeds, waiting=waiting
            )
            lost = search.update(ids, (presence > 0).tolist(), here)
            if found_at is not None:
                for obj_id in waiting_before.intersection(found):
                    k = ids.index(obj_id)
                    mask = (logits[k] > 0).numpy()
                    if presence[k] > 0 and mask.any():
                        found_at.setdefault(frame.index, {})[obj_id] = mask
            if result is not None:
                for obj in result.objects:
                    obj.reacquired = obj.obj_id in found
                    obj.lost = obj.obj_id in lost
                    obj.peak_similarity = found.get(obj.obj_id, math.nan)
                yield result

    def _track(
        self,
        session: Any,
        pixels: torch.Tensor,
        index: int,
        reverse: bool,
        references: dict[int, Reference],
        features: Tensor,
    ) -> Any:
        """The tracker on one frame, its decoder guided with ``guided_attention`` /
        ``semantic_prompt`` by the ``references`` of the objects not prompted here (a prompt
        says what the object is); a failure inside transformers is one line (ValueError)."""
        config = self.config
        per_object: list[dict[str, Tensor] | None] = []
        if config.guided_attention or config.semantic_prompt:
            for idx in range(session.get_obj_num()):
                ref = references.get(session.obj_idx_to_id(idx))
                per_object.append(
                    None
                    if ref is None
                    else decoder_inputs(
                        features,
                        ref.embedding,
                        guided_attention=config.guided_attention,
                        semantic_prompt=config.semantic_prompt,
                    )
                )
        guided = (
            decoder_guidance(self.model.model.mask_decoder, per_object)
            if per_object
            else contextlib.nullcontext()
        )
        try:
            with guided:
                return self.model.model(
                    inference_session=session, frame=pixels, frame_idx=index, reverse=reverse
                )
        except (RuntimeError, IndexError, KeyError) as exc:
            reason = " ".join(str(exc).split())[:200]
            raise ValueError(
                f"the {self.model.name} tracker failed on frame {index} inside transformers "
                f"({reason}); see docs/memory-engine.md for the prompts each model takes"
            ) from exc

    def _refine(
        self,
        logits: Tensor,
        presence: Tensor,
        object_ids: Sequence[int],
        here: dict[int, Prompt],
        search: _Search,
        inputs: tuple[int, Tensor, Any, Tensor],
    ) -> None:
        """PerSAM's cascaded refinement (:mod:`.refine`): each present object not prompted on
        this frame gets, in place in ``logits`` (N, H, W), the logits of its mask's box and
        click decoded on the frame alone. ``inputs``: the frame's index, pixels, image features
        (as the tracker caches them) and (C, h, w) features."""
        index, pixels, vision, features = inputs
        for k, obj_id in enumerate(int(i) for i in object_ids):
            if obj_id in here or presence[k] <= 0:
                continue
            prompt = refine_prompt(logits[k] > 0, features, search.references.get(obj_id))
            if prompt is None:
                continue
            click, box = prompt
            step = Prompt(index, obj_id, "points", points=(click,), point_labels=(1,), box=box)
            logits[k] = self._alone_logits(pixels, step, vision)[0]

    def _redetect(
        self,
        session: Any,
        search: _Search,
        frame: Frame,
        pixels: torch.Tensor,
        vision: Any,
        features: torch.Tensor,
        here: dict[int, Prompt],
    ) -> dict[int, float]:
        """Search the lost objects on ``frame``; prompt the tracker with the click of each
        confident match. Returns the objects found, with their similarity peaks."""
        found: dict[int, float] = {}
        for obj_id, ref in search.lost_references(exclude=here):
            peak, clicks = candidate_clicks(features, ref, self.size)
            if peak < ref.peak_needed(self.config.accept):
                continue
            click = Prompt(frame.index, obj_id, "points", points=tuple(clicks), point_labels=(1, 0))
            mask, score = self._alone(pixels, click, vision)
            contrast = contrast_of(features, ref, mask)
            if score <= 0.5 or contrast is None or contrast < self.config.accept * ref.contrast:
                continue
            self._add_prompt(session, click, None)
            found[obj_id] = peak
        return found

    def _result(
        self,
        frame: Frame,
        ids: list[int],
        logits: torch.Tensor,
        presence: torch.Tensor,
        direction: str,
        here: dict[int, Prompt],
        keep_seeds: bool,
        *,
        waiting: list[int],
    ) -> SessionResult | None:
        """Fuse the objects' (N, H, W) logits into a label map (each pixel to the present object
        of highest positive logit) and describe each object; the saved targets ``waiting`` to
        be found are absent."""
        kept = [k for k, i in enumerate(ids) if keep_seeds or i not in here]
        if not kept and not waiting:
            return None
        labels = np.full(self.size, BACKGROUND_ID, np.uint8)
        present = presence[kept] > 0
        if kept:
            chosen = logits[kept].masked_fill(~present[:, None, None], -math.inf)
            best, which = chosen.max(dim=0)
            table = torch.tensor([ids[k] for k in kept], dtype=torch.uint8)
            fused = torch.where(best > 0, table[which.cpu()], BACKGROUND_ID)
            labels = fused.numpy().astype(np.uint8)
        objects = [
            _object_result(ids[k], bool(found), float(torch.sigmoid(presence[k])), labels, here)
            for k, found in zip(kept, present.tolist(), strict=True)
        ]
        objects += [_object_result(i, False, 0.0, labels, here) for i in waiting]
        return SessionResult(
            index=frame.index,
            time=frame.time,
            labels=labels,
            objects=sorted(objects, key=lambda o: o.obj_id),
            frame=frame.rgb,
            direction=direction,
            annotated=sorted(i for i in here if keep_seeds),
        )

    # ------------------------------------------------------------------ the transformers session
    def _new_inference_session(self) -> Any:
        return self.model.processor.init_video_session(
            inference_device=self.model.device, dtype=torch.float32
        )

    def _frame_logits(self, pred_masks: torch.Tensor) -> torch.Tensor:
        """(N, H, W) frame-size logits of the tracker's (N, 1, h, w) low-resolution masks."""
        size = [list(self.size)]
        full = self.model.processor.post_process_masks([pred_masks], size, binarize=False)[0]
        return full[:, 0].float().cpu()

    def _add_prompt(self, session: Any, prompt: Prompt, mask: np.ndarray | None) -> None:
        """Give one prompt to the inference session (a mask, or clicks and a box)."""
        processor = self.model.processor
        if prompt.kind == "mask" and mask is not None:
            processor.add_inputs_to_inference_session(
                session, frame_idx=prompt.frame, obj_ids=prompt.obj_id, input_masks=mask
            )
            return
        points = [[list(p) for p in prompt.points]] if prompt.points else None
        labels = [[list(prompt.point_labels)]] if prompt.points else None
        processor.add_inputs_to_inference_session(
            session,
            frame_idx=prompt.frame,
            obj_ids=prompt.obj_id,
            input_points=None if points is None else [points],
            input_labels=labels,
            input_boxes=None if prompt.box is None else [[list(prompt.box)]],
            original_size=self.size,
        )

    def _forget(self, session: Any, index: int, reverse: bool) -> None:
        """Drop the frame's pixels and the outputs the tracker will not read again (frames more
        than :attr:`window` behind ``index`` in the pass's direction)."""
        if session.processed_frames is not None:
            session.processed_frames.pop(index, None)

        def behind(frame: int) -> bool:
            return (frame - index if reverse else index - frame) >= self.window

        tables = [
            outputs["non_cond_frame_outputs"] for outputs in session.output_dict_per_obj.values()
        ]
        for table in [*tables, *session.frames_tracked_per_obj.values()]:
            for old in [f for f in table if behind(f)]:
                del table[old]


def _object_result(
    obj_id: int, present: bool, score: float, labels: np.ndarray, here: dict[int, Prompt]
) -> ObjectResult:
    ys, xs = np.nonzero(labels == obj_id)
    return ObjectResult(
        obj_id=obj_id,
        present=present,
        score=score,
        area=len(xs),
        bbox=(int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())) if len(xs) else None,
        peak_similarity=math.nan,
        annotated=obj_id in here,
    )


def memory_record(model: MemoryModel, config: MemoryConfig) -> dict[str, Any]:
    """What results.json records of the memory engine."""
    settings = model.model.config
    return {
        "engine": MEMORY_ENGINE,
        "device": str(model.device),
        "family": model.info.family,
        "memory": {
            "frames": int(settings.num_maskmem),
            "object_pointers": int(settings.max_object_pointers_in_encoder),
        },
        "config": config.to_dict(),
    }


class _Search:
    """Which objects are lost, and their references (see :mod:`.redetect`)."""

    def __init__(self, config: MemoryConfig) -> None:
        self.config = config
        self.references: dict[int, Reference] = {}
        self.absent: dict[int, int] = {}  # frames in a row the tracker said "gone"
        self.targets: set[int] = set()

    def target(self, obj_id: int, target: Target) -> None:
        """A saved target: lost from the start, searched with its own reference."""
        inside, outside = target.reference_similarity or (1.0, 0.0)
        embedding = F.normalize(target.embedding.detach().float().cpu(), dim=0)
        self.references[obj_id] = Reference(embedding, inside, outside)
        self.absent[obj_id] = self.config.lost_after
        self.targets.add(obj_id)

    def waiting(self, ids: list[int]) -> list[int]:
        """The saved targets not in the tracker yet (not found so far)."""
        return sorted(self.targets - set(ids))

    def prompted(self, obj_id: int, features: Tensor, mask: Tensor) -> None:
        """A prompt of the object: its reference is taken from there."""
        ref = reference(features, mask)
        if ref is not None:
            self.references[obj_id] = ref
        self.absent[obj_id] = 0

    def lost_references(self, exclude: dict[int, Prompt]) -> list[tuple[int, Reference]]:
        if not self.config.redetect:
            return []
        return [
            (obj_id, ref)
            for obj_id, ref in sorted(self.references.items())
            if obj_id not in exclude and self.absent.get(obj_id, 0) >= self.config.lost_after
        ]

    def update(self, ids: list[int], present: list[bool], here: dict[int, Prompt]) -> set[int]:
        """Count the frame; return the objects that became lost on it."""
        lost = set()
        for obj_id, seen in zip(ids, present, strict=True):
            run = 0 if seen or obj_id in here else self.absent.get(obj_id, 0) + 1
            self.absent[obj_id] = run
            if run == self.config.lost_after:
                lost.add(obj_id)
        return lost


def _cache_features(session: Any, index: int, vision: Any) -> None:
    """Give the inference session the frame's image features (so it does not compute them)."""
    session.cache.cache_vision_features(
        index,
        {
            "vision_feats": vision.fpn_hidden_states,
            "vision_pos_embeds": vision.fpn_position_encoding,
        },
    )
