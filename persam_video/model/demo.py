"""The small demo model bundled with persam-video: a demo and test model, *not* SAM.

No real SAM checkpoint can be downloaded in CI or offline, so persam-video ships a tiny model of
SAM's architecture (segment-anything's own classes, ~1.5M parameters, 256-px input, 16x16 feature
grid) that ``tools/train_demo_model.py`` trained on procedural scenes
(:mod:`persam_video.synthetic`: textured shapes over textured backgrounds). It segments such
scenes from point, box and mask prompts and its features tell their objects apart, which is enough
to run persam-video's demo and quality tests end to end without a download. It knows nothing of
natural images: use ``vit_b``, ``vit_l`` or ``vit_h`` for real work.

The weights are float16 safetensors with the architecture
(:class:`~persam_video.model.spec.SamSpec`) and the training facts (command, seed, steps,
validation metrics) in the metadata; the file is checked against :data:`DEMO_SHA256` before it
is loaded.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from segment_anything.modeling import Sam

from persam_video.model.checkpoints import WeightsError, sha256_of
from persam_video.model.spec import SamSpec, build_sam_from_spec

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

DEMO_MODEL_NAME = "demo"
#: What every run with the demo model says (stderr, results.json's ``run.warning``, report).
DEMO_WARNING = (
    "the demo model is a small model trained on procedural clips, not SAM: its results on real "
    "footage mean nothing"
)
#: The bundled weights (package data).
DEMO_WEIGHTS: Traversable | Path = (
    resources.files("persam_video") / "assets" / "demo_sam.safetensors"
)
#: SHA-256 of the bundled weights file.
DEMO_SHA256 = "5f8706d721ae561f41bac592a6b8f2c9211261af637105adda475d1e5dc903d2"
#: Metadata keys holding JSON (the others are plain strings).
_JSON_KEYS = ("spec", "training")


def _read(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Verify the weights file at ``path``; return its metadata and its tensors (as stored)."""
    if not path.is_file():
        raise WeightsError(f"the demo model weights {path} are missing; reinstall persam-video")
    digest = sha256_of(path)
    if digest != DEMO_SHA256:
        raise WeightsError(
            f"the demo model weights {path} are corrupt (SHA-256 {digest[:12]}…, expected "
            f"{DEMO_SHA256[:12]}…); reinstall persam-video"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"the demo model weights {path} cannot be read ({exc})") from exc
    return metadata, tensors


def demo_weights_path() -> Path:
    """Where the bundled weights file is (inside the installed package)."""
    with resources.as_file(DEMO_WEIGHTS) as path:
        return Path(path)


def demo_model_info() -> dict[str, Any]:
    """The metadata of the bundled weights: ``name``, ``description``, ``spec`` (the
    :class:`~persam_video.model.spec.SamSpec` fields) and ``training`` (command, seed, steps,
    validation metrics, ...). Verifies the file first."""
    with resources.as_file(DEMO_WEIGHTS) as path:
        metadata, _ = _read(Path(path))
    return {k: json.loads(v) if k in _JSON_KEYS else v for k, v in metadata.items()}


def load_demo_sam() -> Sam:
    """Load the bundled demo model (float32, CPU, eval mode) after checking its SHA-256.

    Raises :class:`~persam_video.model.checkpoints.WeightsError` when the file is missing or
    corrupt.
    """
    with resources.as_file(DEMO_WEIGHTS) as path:
        metadata, tensors = _read(Path(path))
    spec = SamSpec.from_dict(json.loads(metadata["spec"]))
    sam = build_sam_from_spec(spec)
    sam.load_state_dict({key: value.float() for key, value in tensors.items()})
    return sam.eval()
