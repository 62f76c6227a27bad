"""The memory engine's settings: how it finds a lost object again (:mod:`.redetect`).

On the command line (and in batch manifests) they are ``--set memory.FIELD=VALUE`` overrides,
e.g. ``--set memory.redetect=false`` or ``--set memory.lost_after=5``; PerSAM's config keys
do not apply to the memory engine, nor these to PerSAM's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import yaml

from persam_video.config import ConfigError, load_yaml

#: The section of the ``--set`` keys that configure the memory engine.
MEMORY_SECTION = "memory"


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
    #: PerSAM's target-guided attention inside the tracker's mask decoder: the target's
    #: similarity map biases the tokens' attention to the frame (see :mod:`.guidance`).
    guided_attention: bool = False
    #: PerSAM's target-semantic prompting there: the target embedding joins the decoder's
    #: tokens before every block.
    semantic_prompt: bool = False
    #: PerSAM's cascaded refinement through the tracker's image path: each tracked mask decoded
    #: again on its frame alone from its box and a click (see :mod:`.refine`); the outputs
    #: show the refined mask, the tracker's memory keeps its own.
    refine: bool = False

    def __post_init__(self) -> None:
        for name in ("redetect", "guided_attention", "semantic_prompt", "refine"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ConfigError(f"memory.{name} must be true or false, got {value!r}")
        if isinstance(self.lost_after, bool) or not isinstance(self.lost_after, int):
            raise ConfigError(f"memory.lost_after must be an integer, got {self.lost_after!r}")
        if not 1 <= self.lost_after <= 100_000:
            raise ConfigError(f"memory.lost_after must be in [1, 100000], got {self.lost_after}")
        if isinstance(self.accept, bool) or not isinstance(self.accept, int | float):
            raise ConfigError(f"memory.accept must be a number, got {self.accept!r}")
        if not 0.0 <= self.accept <= 1.0:
            raise ConfigError(f"memory.accept must be in [0, 1], got {self.accept}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemoryConfig:
        """The config of ``to_dict``'s form (unknown keys refused)."""
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown memory engine settings: {', '.join(unknown)}")
        return cls(**data)

    def with_overrides(self, overrides: Sequence[str]) -> MemoryConfig:
        """Apply ``memory.field=value`` strings (values parsed as YAML scalars).

        Raises:
            ConfigError: a key outside the ``memory`` section (PerSAM's settings do not apply
                to the memory engine), an unknown field or a bad value.
        """
        data = self.to_dict()
        for item in overrides:
            key, sep, raw = item.partition("=")
            section, _, name = key.strip().partition(".")
            if not sep or not name:
                raise ConfigError(f"override {item!r} is not of the form memory.field=value")
            if section != MEMORY_SECTION:
                raise ConfigError(
                    f"{key.strip()!r} configures PerSAM's engine; the memory engine's settings "
                    f"are {', '.join(memory_keys())}"
                )
            if name not in data:
                raise ConfigError(
                    f"unknown config key {key.strip()!r}; valid keys: {', '.join(memory_keys())}"
                )
            try:
                data[name] = load_yaml(raw)
            except yaml.YAMLError as exc:
                raise ConfigError(f"cannot parse the value of {key.strip()!r}") from exc
        return MemoryConfig.from_dict(data)


def memory_keys() -> list[str]:
    """The ``memory.field`` keys of :class:`MemoryConfig`."""
    return [f"{MEMORY_SECTION}.{f.name}" for f in fields(MemoryConfig)]


def is_memory_key(override: str) -> bool:
    """Whether a ``key=value`` override configures the memory engine."""
    return override.strip().startswith(f"{MEMORY_SECTION}.")
