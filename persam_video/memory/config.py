"""The memory engine's settings: how it finds a lost object again (:mod:`.redetect`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class MemoryConfig:
    """How the memory engine re-detects an object its tracker lost."""

    #: Search every frame for an object the tracker has lost, with PerSAM's location prior,
    #: and prompt the tracker where a confident match is.
    redetect: bool = True
    #: Frames in a row with the tracker's object score at or below 0 before an object counts as
    #: lost and is searched for. Range: [1, 100000]
    lost_after: int = 3
    #: Share of the object's prompt-frame contrast a candidate must reach, both for its
    #: similarity peak and for its mask (see :mod:`persam_video.memory.redetect`).
    #: Range: [0, 1]
    accept: float = 0.5

    def __post_init__(self) -> None:
        if not 1 <= self.lost_after <= 100_000:
            raise ValueError(f"lost_after must be in [1, 100000], got {self.lost_after}")
        if not 0.0 <= self.accept <= 1.0:
            raise ValueError(f"accept must be in [0, 1], got {self.accept}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
