"""Target files: a personalized target saved once and reused across clips and image collections.

A ``.target`` file is a safetensors file (loading it never executes code) holding the target
embedding ``embedding`` (C,) and, after PerSAM-F, ``mask_weights`` (3,) (one per SAM multimask
output), with JSON metadata: the file format version, the persam-video version, the model name
and checkpoint SHA-256 it was made with, the config, and the number of reference shots. A target
is only valid with the model that made it: :func:`check_compatible` refuses any other.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from persam_video._version import __version__
from persam_video.apps.engines import EngineConfig, engine_config
from persam_video.atomic import atomic_file
from persam_video.config import ConfigError, load_json
from persam_video.model.spec import NUM_MULTIMASK_OUTPUTS
from persam_video.persam import Target

TARGET_FORMAT = "persam-video target"
TARGET_FORMAT_VERSION = 1
TARGET_SUFFIX = ".target"
#: The dtype of a target's tensors (what :func:`save_target` writes).
TARGET_DTYPE = torch.float32
#: Largest magnitude of any value of a target's tensors. SAM's features come out of layer
#: norms (values of a few units), and PerSAM-F's weights are a few units too: a file holding
#: larger values was not made by ``personalize``, and would overflow float32 downstream.
MAX_TARGET_VALUE = 1e4
#: Smallest norm of a target embedding: below it, it points nowhere (cosine similarities of
#: an all-zero embedding are undefined).
MIN_TARGET_NORM = 1e-6


@dataclass
class TargetFile:
    """A loaded target file."""

    target: Target
    #: ``model``, ``checkpoint`` and ``checkpoint_sha256`` of the model that made it.
    model: dict[str, Any]
    #: The config of the engine that made it (PerSAM's, or the memory engine's).
    config: EngineConfig
    shots: int
    made_by: str


def save_target(
    path: str | os.PathLike[str],
    target: Target,
    *,
    model: dict[str, Any],
    config: EngineConfig,
    shots: int,
) -> Path:
    """Write ``target`` to ``path`` atomically; return the path."""
    path = Path(path)
    tensors = {"embedding": target.embedding.detach().float().cpu().contiguous()}
    if target.mask_weights is not None:
        tensors["mask_weights"] = target.mask_weights.detach().float().cpu().contiguous()
    metadata = {
        "format": TARGET_FORMAT,
        "format_version": str(TARGET_FORMAT_VERSION),
        "persam_video": __version__,
        "model": json.dumps(model),
        "config": json.dumps(config.to_dict()),
        "shots": str(shots),
        "finetune": json.dumps(target.finetune_info),
    }
    if target.reference_similarity is not None:
        metadata["reference_similarity"] = json.dumps(list(target.reference_similarity))
    with atomic_file(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def load_target(path: str | os.PathLike[str]) -> TargetFile:
    """Read a target file; a file of another format or version is refused (``ValueError``)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"target file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a persam-video target file ({exc})") from None
    if metadata.get("format") != TARGET_FORMAT or "embedding" not in tensors:
        raise ValueError(f"{path} is not a persam-video target file")
    version = metadata.get("format_version")
    if version != str(TARGET_FORMAT_VERSION):
        raise ValueError(
            f"{path} was made by persam-video {metadata.get('persam_video', '?')} in target "
            f"format {version}; this version ({__version__}) reads format {TARGET_FORMAT_VERSION}"
        )
    try:
        model = _metadata_json(metadata["model"])
        shots = int(metadata["shots"])
        if not isinstance(model, dict):
            raise TypeError(f"the model record is a {type(model).__name__}, not a mapping")
        config = engine_config(str(model.get("model")), _metadata_json(metadata["config"]))
        info = _metadata_json(metadata.get("finetune") or "null")
        similarity = _reference_similarity(metadata.get("reference_similarity"))
    except (KeyError, ValueError, TypeError, AttributeError, ConfigError) as exc:
        raise ValueError(f"{path} has invalid metadata ({str(exc)[:200]})") from None
    embedding = tensors["embedding"]
    weights = tensors.get("mask_weights")
    if embedding.ndim != 1 or (weights is not None and weights.shape != (NUM_MULTIMASK_OUTPUTS,)):
        raise ValueError(f"{path} holds tensors of unexpected shapes")
    _check_values(path, {"embedding": embedding, "mask_weights": weights})
    target = Target(embedding, weights, info, similarity)
    return TargetFile(target, model, config, shots, str(metadata.get("persam_video", "?")))


def _reference_similarity(text: str | None) -> tuple[float, float] | None:
    """The optional ``reference_similarity`` metadata: two finite numbers in [-1, 1]."""
    if text is None:
        return None
    value = _metadata_json(text)
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and -1.0 <= v <= 1.0 for v in value)
    ):
        raise ValueError("reference_similarity must be two numbers in [-1, 1]")
    return float(value[0]), float(value[1])


def _metadata_json(text: str) -> Any:
    """A JSON field of a target's metadata: at most ``MAX_NESTING`` levels deep, and no NaN or
    infinity (what :func:`save_target` writes has neither)."""

    def refuse(constant: str) -> None:
        raise ValueError(f"non-finite number {constant}")

    return load_json(text, parse_constant=refuse)


def _check_values(path: Path, tensors: dict[str, torch.Tensor | None]) -> None:
    """Refuse target tensors that ``personalize`` cannot have made (``ValueError`` naming the
    file and what is wrong): not float32, NaN or infinite values, values beyond
    :data:`MAX_TARGET_VALUE`, an embedding of norm below :data:`MIN_TARGET_NORM` (all zeros)."""
    for name, tensor in tensors.items():
        if tensor is None:
            continue
        if tensor.dtype != TARGET_DTYPE:
            raise ValueError(
                f"{path}: its {name} is {str(tensor.dtype).removeprefix('torch.')}, "
                "not float32; personalize the target again"
            )
        if not bool(tensor.isfinite().all()):
            raise ValueError(f"{path} holds NaN or infinite values; personalize the target again")
        if bool((tensor.abs() > MAX_TARGET_VALUE).any()):
            raise ValueError(
                f"{path}: its {name} holds values of magnitude above "
                f"{MAX_TARGET_VALUE:g}; personalize the target again"
            )
    norm = float(tensors["embedding"].double().norm())
    if norm < MIN_TARGET_NORM:
        raise ValueError(
            f"{path}: its embedding has norm {norm:.3g} (all zeros: nothing to "
            "search for); personalize the target again"
        )


def check_compatible(
    target: TargetFile, model: dict[str, Any], path: str | os.PathLike[str] = "target"
) -> None:
    """Refuse a target made with another model than ``model`` (name and checkpoint hash)."""
    made = target.model
    if made.get("model") != model.get("model"):
        raise ValueError(
            f"{path} was made with model {made.get('model')}, not {model.get('model')}; "
            f"use --model {made.get('model')} or personalize again"
        )
    if made.get("checkpoint_sha256") != model.get("checkpoint_sha256"):
        raise ValueError(
            f"{path} was made with another {made.get('model')} checkpoint "
            f"(SHA-256 {str(made.get('checkpoint_sha256'))[:12]}…); personalize again with this one"
        )


def to_device(target: Target, device: torch.device) -> Target:
    """``target`` with its tensors on ``device``."""
    weights = None if target.mask_weights is None else target.mask_weights.to(device)
    return dataclasses.replace(target, embedding=target.embedding.to(device), mask_weights=weights)
