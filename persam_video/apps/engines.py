"""One home for turning a model name into a tracking engine.

A SAM v1-family model (SAM, MobileSAM, HQ-SAM, the demo model) runs PerSAM's engine, configured
by a :class:`~persam_video.config.PerSAMConfig`; a memory tracker (SAM 2.1, EdgeTAM, the SAM 3
tracker) runs the memory engine, configured by a
:class:`~persam_video.memory.config.MemoryConfig` (``memory.*`` overrides). ``track``, ``davis``,
``find``, ``batch`` and their workers all load models and make engines here, so no path forks on
the engine.

    model = load_engine_model("sam2.1_hiera_tiny", "models/sam2.1-tiny", "cpu")
    config = engine_config(model.name, base=None, overrides=["memory.lost_after=5"])
    engine = model.engine(config)        # then engine.open_session(frames) ...
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from persam_video.config import ConfigError, PerSAMConfig
from persam_video.memory.config import MemoryConfig, is_memory_key, memory_keys
from persam_video.memory.engine import MemoryEngine
from persam_video.memory.models import (
    MemoryModel,
    folder_metadata,
    is_memory_model,
    load_memory_model,
)
from persam_video.video import VideoTracker
from persam_video.video.engine import Engine, as_engine

#: Either engine's configuration.
EngineConfig = PerSAMConfig | MemoryConfig
_Config = TypeVar("_Config", PerSAMConfig, MemoryConfig)


@dataclass
class EngineModel:
    """A loaded model of either engine, and what results.json records of it.

    Exactly one of ``sam`` (a SAM v1-family ``Sam``) and ``memory`` is set.
    """

    name: str
    metadata: dict[str, Any]
    sam: Any = None
    memory: MemoryModel | None = None

    @property
    def is_memory(self) -> bool:
        return self.memory is not None

    @property
    def device(self) -> torch.device:
        return self.memory.device if self.memory is not None else self.sam.device

    def engine(
        self, config: EngineConfig, *, encoder: Any = None, progress: bool = False
    ) -> Engine:
        """The engine of this model with ``config`` (``encoder``: PerSAM's frame encoder,
        the default one when None)."""
        if self.memory is not None:
            if not isinstance(config, MemoryConfig):
                raise TypeError("the memory engine takes a MemoryConfig")
            return MemoryEngine(self.memory, config)
        if not isinstance(config, PerSAMConfig):
            raise TypeError("PerSAM's engine takes a PerSAMConfig")
        return as_engine(VideoTracker(self.sam, config, encoder, progress=progress))


def load_engine_model(
    name: str,
    checkpoint: str | Path | None,
    device: str | torch.device = "auto",
    *,
    progress: bool = False,
) -> EngineModel:
    """Load ``name`` (a SAM v1-family model or a memory tracker) on ``device``.

    Raises:
        WeightsError: what :func:`~persam_video.model.registry.load_sam` or
            :func:`~persam_video.memory.models.load_memory_model` refuse (one line).
    """
    from persam_video.model.registry import load_sam, model_metadata, resolve_device

    if is_memory_model(name):
        memory = load_memory_model(name, checkpoint, resolve_device(device))
        return EngineModel(name, memory.metadata(), memory=memory)
    sam = load_sam(name, checkpoint=checkpoint, device=device, progress=progress)
    return EngineModel(name, model_metadata(name, checkpoint), sam=sam)


def engine_metadata(name: str, checkpoint: str | Path | None) -> dict[str, Any]:
    """What results.json and target files record of model ``name`` from ``checkpoint``, known
    before it loads (to check saved targets at once, not after a download)."""
    from persam_video.model.registry import model_metadata

    if is_memory_model(name):
        return folder_metadata(name, checkpoint)
    return model_metadata(name, checkpoint)


def engine_config(
    model_name: str, base: EngineConfig | dict[str, Any] | None, overrides: Sequence[str] = ()
) -> EngineConfig:
    """The config of ``model_name``'s engine: ``base`` (a config, its ``to_dict()`` form, or
    None for the engine's defaults) with ``overrides`` applied.

    Raises:
        ConfigError: an override of the other engine (``memory.*`` keys on a PerSAM model,
            PerSAM's keys on a memory tracker), or an invalid one.
    """
    if is_memory_model(model_name):
        return _config_as(MemoryConfig, base, model_name).with_overrides(overrides)
    stray = [item for item in overrides if is_memory_key(item)]
    if stray:
        raise ConfigError(
            f"{stray[0].partition('=')[0].strip()!r} configures the memory engine "
            f"({', '.join(memory_keys())}); {model_name} runs PerSAM's engine"
        )
    return _config_as(PerSAMConfig, base, model_name).with_overrides(list(overrides))


def _config_as(
    kind: type[_Config], base: EngineConfig | dict[str, Any] | None, model_name: str
) -> _Config:
    """``base`` as a ``kind`` config: itself, read from its dict, or the defaults for None."""
    if isinstance(base, kind):
        return base
    if isinstance(base, dict):
        return kind.from_dict(base)
    if base is None:
        return kind()
    raise ConfigError(f"{model_name} takes a {kind.__name__}, not a {type(base).__name__}")
