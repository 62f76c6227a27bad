"""The memory engine: a memory tracker behind the engine seam (:mod:`persam_video.video.engine`).

Everything that writes a run folder talks to :class:`~persam_video.video.engine.Engine`, so the
outputs, the command line and the app run the memory trackers unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from persam_video.memory.config import MemoryConfig
from persam_video.memory.models import MemoryModel
from persam_video.memory.session import MEMORY_ENGINE, MemorySession, memory_record
from persam_video.video.session import Direction


@dataclass(frozen=True)
class MemoryEngine:
    """SAM 2.1, EdgeTAM or the SAM 3 tracker (a :class:`MemoryModel`) as a tracking engine."""

    model: MemoryModel
    config: MemoryConfig = field(default_factory=MemoryConfig)
    name: str = MEMORY_ENGINE

    def record(self) -> dict[str, Any]:
        return memory_record(self.model, self.config)

    def open_session(self, frames: Any) -> MemorySession:
        return MemorySession(self.model, frames, config=self.config)

    def check_plan(self, frames: Sequence[int], direction: Direction, *, targets: bool) -> None:
        """Every plan of prompts, directions and saved targets can run (nothing to refuse)."""
