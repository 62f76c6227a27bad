"""The engine seam: a second engine, written against :mod:`persam_video.video.engine` only, runs
through the one output pipeline (``track_to_folder``, ``track_prompts_to_folder``) with no other
change, and the folder it writes is a complete run (every frame's mask, the videos, the report,
results.json naming the engine)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from persam_video.apps.prompted import PromptSpec, track_prompts_to_folder
from persam_video.apps.track import RunStatus, track_to_folder
from persam_video.io import write_label_png
from persam_video.labels import LabelMap
from persam_video.persam.prompts import PromptMask
from persam_video.video.engine import Engine, TrackingSession
from persam_video.video.session import BACKWARD, FORWARD, Prompt, SessionResult
from persam_video.video.state import ObjectResult
from tests.e2e.test_track_cli import make_input

N_FRAMES = 6


class StillSession:
    """Holds each object's prompt mask still on every frame (a 'tracker' that never moves)."""

    def __init__(self, frames: Any) -> None:
        self.frames = frames
        self.prompts: list[Prompt] = []
        self._masks: dict[int, dict[int, np.ndarray]] = {}

    size = property(lambda self: self.frames.size)
    object_ids = property(lambda self: sorted({p.obj_id for p in self.prompts}))
    target_ids = property(lambda self: [])
    annotated_frames = property(lambda self: sorted(self._masks))

    def add_labels(self, frame: int, labels: Any, *, source: str | None = None) -> list[int]:
        annotation = LabelMap.check(labels, self.size)
        for obj_id in annotation.ids:
            mask = annotation.mask(obj_id)
            self._masks.setdefault(frame, {})[obj_id] = mask
            self.prompts.append(Prompt(frame, obj_id, "mask", area=int(mask.sum())))
        return list(annotation.ids)

    def add_points(
        self,
        frame: int,
        obj_id: int,
        points: Sequence[Sequence[float]] | np.ndarray,
        labels: Any = None,
        *,
        box: Sequence[float] | None = None,
    ) -> PromptMask:
        mask = np.zeros(self.size, bool)
        for x, y in np.asarray(points, float).reshape(-1, 2):
            mask[max(0, int(y) - 3) : int(y) + 4, max(0, int(x) - 3) : int(x) + 4] = True
        self._masks.setdefault(frame, {})[obj_id] = mask
        self.prompts.append(Prompt(frame, obj_id, "points", area=int(mask.sum())))
        return PromptMask(mask, 1.0, "single")

    def add_target(self, obj_id: int, target: Any) -> None:
        raise ValueError("this engine takes no saved targets")

    def masks_on(self, frame: int) -> dict[int, np.ndarray]:
        return dict(self._masks.get(frame, {}))

    def first_frames(self) -> dict[int, int]:
        return {i: min(f for f in self._masks if i in self._masks[f]) for i in self.object_ids}

    def check_direction(self, direction: str) -> None:
        if direction == BACKWARD:
            raise ValueError("this engine tracks forward only")

    def in_frame_order(self, direction: str) -> bool:
        return self.annotated_frames[:1] == [0]

    def expected_results(self, direction: str) -> int | None:
        count = self.frames.num_frames
        return None if count is None else count - self.annotated_frames[0]

    def propagate(self, direction: str = "both") -> Iterator[SessionResult]:
        held: dict[int, np.ndarray] = {}
        for frame in self.frames.forward(self.annotated_frames[0]):
            held.update(self._masks.get(frame.index, {}))
            labels = np.zeros(self.size, np.uint8)
            for obj_id, mask in sorted(held.items()):
                labels[mask] = obj_id
            objects = [
                ObjectResult(i, True, 1.0, int((labels == i).sum()), None, float("nan"))
                for i in sorted(held)
            ]
            yield SessionResult(
                frame.index, frame.time, labels, objects, frame.rgb, direction=FORWARD
            )

    def run_record(self) -> dict[str, Any]:
        return {"engine": "still", "config": {"moves": False}}

    def close(self) -> None:
        self.frames.close()


class StillEngine:
    name = "still"

    def record(self) -> dict[str, Any]:
        return {"engine": "still", "config": {"moves": False}}

    def open_session(self, frames: Any) -> StillSession:
        return StillSession(frames)

    def check_plan(self, frames: Sequence[int], direction: str, *, targets: bool) -> None:
        if direction == BACKWARD:
            raise ValueError("this engine tracks forward only")


def test_the_fake_engine_meets_the_interface():
    engine = StillEngine()
    assert isinstance(engine, Engine)
    frames = SimpleNamespace(size=(4, 4), num_frames=1)
    assert isinstance(engine.open_session(frames), TrackingSession)


def test_a_second_engine_writes_a_complete_run_from_a_first_frame_mask(tmp_path):
    video, mask, _ = make_input(tmp_path, n_frames=N_FRAMES)
    out = tmp_path / "out"
    summary = track_to_folder(StillEngine(), video, mask, out, progress=False)
    assert summary.status == RunStatus.COMPLETE and summary.frames == N_FRAMES
    document = json.loads((out / "results.json").read_text())
    assert document["run"]["engine"] == "still" and len(document["frames"]) == N_FRAMES
    assert sorted(p.name for p in (out / "masks").iterdir())[-1] == f"{N_FRAMES - 1:05d}.png"
    assert (out / "overlay.mp4").stat().st_size > 0 and (out / "report.html").exists()


def test_a_second_engine_runs_prompts_on_a_later_frame_and_refuses_what_it_cannot(tmp_path):
    video, _, labels = make_input(tmp_path, n_frames=N_FRAMES)
    later = tmp_path / "later.png"
    write_label_png(later, labels)
    out = tmp_path / "out"
    spec = PromptSpec("mask", 2, path=str(later), text=f"{later}@2")
    summary = track_prompts_to_folder(
        StillEngine(), video, [spec], out, direction="forward", progress=False
    )
    assert summary.status == RunStatus.COMPLETE
    document = json.loads((out / "results.json").read_text())
    assert document["run"]["engine"] == "still"
    assert [f["directions"] for f in document["frames"][:3]] == [["none"], ["none"], ["forward"]]
    with pytest.raises(ValueError, match="forward only"):
        track_prompts_to_folder(
            StillEngine(), video, [spec], tmp_path / "b", direction="backward", progress=False
        )
    assert not (tmp_path / "b").exists()
