"""Which SAM to load: ``load_sam`` by name (official checkpoints or the bundled demo model).

``load_sam`` returns the stock model, exactly as segment-anything builds it with its weights
loaded: nothing is swapped or patched. How frames are encoded (attention implementation,
precision, batching, ``torch.compile``) is chosen by whoever builds the encoder
(:class:`persam_video.persam.encoder.FrameEncoder`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import Sam

from persam_video.model.checkpoints import (
    CHECKPOINTS,
    WeightsError,
    checkpoint_path,
    ensure_checkpoint,
    sha256_of,
    verify_file,
)
from persam_video.model.demo import DEMO_MODEL_NAME, DEMO_SHA256, DEMO_WARNING, load_demo_sam
from persam_video.model.hq import HQ_MODELS, HQ_TOKEN_KEY, build_hq_sam, hq_package
from persam_video.model.mobile import MOBILE_SAM_NAME, build_mobile_sam
from persam_video.model.spec import OFFICIAL_SHAPES
from persam_video.model.tinyvit import TINYVIT_KEY


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here")
    return resolved


def model_names() -> list[str]:
    """Names accepted by :func:`load_sam`."""
    return [*CHECKPOINTS, DEMO_MODEL_NAME]


def load_sam(
    name: str = "vit_b",
    checkpoint: str | Path | None = None,
    device: str | torch.device = "auto",
    *,
    progress: bool = True,
) -> Sam:
    """Load a SAM model in eval mode on ``device``.

    Args:
        name: ``vit_h``, ``vit_l``, ``vit_b`` (official SAM checkpoints), ``mobile_sam``
            (MobileSAM: TinyViT-5M and SAM's decoder), ``sam_hq_vit_b``, ``sam_hq_vit_l``,
            ``sam_hq_vit_h``, ``sam_hq_vit_tiny`` (HQ-SAM and Light HQ-SAM; these five need the
            ``hq`` extra), downloaded and verified on first use, or ``demo`` (the small model
            bundled with persam-video).
        checkpoint: a local checkpoint file to use instead of the cache. It is checked against the
            official SHA-256 when its size is that of an official checkpoint.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        progress: show a progress bar while downloading.

    Returns the stock model (eval mode, on ``device``): segment-anything's ``Sam``, or for
    HQ-SAM segment-anything-hq's (:mod:`persam_video.model.hq`).
    """
    target = resolve_device(device)
    if name == DEMO_MODEL_NAME:
        if checkpoint is not None:
            raise WeightsError("the demo model is bundled; --checkpoint cannot be used with it")
        sam = load_demo_sam()
    else:
        sam = _load_official(name, checkpoint, progress)
    return sam.eval().to(target)


def _load_official(name: str, checkpoint: str | Path | None, progress: bool) -> Sam:
    """An official architecture with its verified checkpoint (downloaded on first use)."""
    if name not in CHECKPOINTS:
        raise WeightsError(f"unknown model {name!r}; known: {', '.join(model_names())}")
    if name == MOBILE_SAM_NAME or name in HQ_MODELS:
        hq_package()  # before a download: the model cannot be built without it
    if checkpoint is None:
        path = ensure_checkpoint(name, progress=progress)
    else:
        path = Path(checkpoint)
        if not path.is_file():
            raise WeightsError(f"checkpoint file {path} does not exist")
        for official in CHECKPOINTS.values():
            if path.stat().st_size == official.size:
                verify_file(path, official)
                if official.name != name:
                    raise WeightsError(f"{path} is the {official.name} checkpoint, not {name}")
    state = load_state_dict(path)
    found = describe_state_dict(state)
    if found != name:  # refuse before building a large model for nothing
        raise WeightsError(f"{path} is not a {name} SAM checkpoint (it looks like {found})")
    if name == MOBILE_SAM_NAME:
        sam = build_mobile_sam()
    elif name in HQ_MODELS:
        sam = build_hq_sam(name)
    else:
        sam = sam_model_registry[name](checkpoint=None)
    _load_into(sam, state, path, name)
    return sam


def model_metadata(name: str, checkpoint: str | Path | None = None) -> dict[str, Any]:
    """Model name, checkpoint file and its SHA-256, for results and target files; the demo
    model's also carries its ``warning`` (:data:`~persam_video.model.demo.DEMO_WARNING`).

    Official checkpoints of the official size were verified against the registry's hash when
    downloaded or loaded, so that hash is reported without reading the file again.
    """
    if name == DEMO_MODEL_NAME:
        return {
            "model": name,
            "checkpoint": None,
            "checkpoint_sha256": DEMO_SHA256,
            "warning": DEMO_WARNING,
        }
    path = Path(checkpoint) if checkpoint is not None else checkpoint_path(name)
    official = CHECKPOINTS.get(name)
    if official is not None and path.is_file() and path.stat().st_size == official.size:
        digest: str | None = official.sha256
    else:
        digest = sha256_of(path) if path.is_file() else None
    return {"model": name, "checkpoint": str(path), "checkpoint_sha256": digest}


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint with ``weights_only=True`` (never unpickles arbitrary objects)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for bad files
        raise WeightsError(
            f"{path} is not a loadable PyTorch checkpoint ({_load_failure(exc)})"
        ) from exc
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    return state


#: torch.load's message when ``weights_only=True`` refuses a file (random bytes included).
_WEIGHTS_ONLY_FAILURE = "Weights only load failed"
#: Longest reason quoted from torch in a message.
MAX_REASON_CHARS = 160


def _load_failure(exc: BaseException) -> str:
    """Why torch.load failed, in one short whole sentence."""
    text = re.sub(r"^\[[^\]]*\][\s.]*", "", " ".join(str(exc).split()))  # C++ source tags
    if _WEIGHTS_ONLY_FAILURE in text:
        return "torch.load with weights_only=True refused it: it is not a file of plain tensors"
    sentence = text.split(". ")[0].rstrip(".") or type(exc).__name__
    if len(sentence) > MAX_REASON_CHARS:
        sentence = sentence[:MAX_REASON_CHARS].rsplit(" ", 1)[0] + " ..."
    # torch's own words for damaged files are often bare ("pop from empty list", a number)
    return (
        f"torch.load with weights_only=True failed with {sentence!r}: it is not a file of "
        "plain tensors"
    )


def describe_state_dict(state: dict[str, torch.Tensor]) -> str:
    """A short guess of the architecture a SAM state dict belongs to, for error messages."""
    hq = HQ_TOKEN_KEY in state
    if TINYVIT_KEY in state:
        return "sam_hq_vit_tiny" if hq else MOBILE_SAM_NAME
    weight = state.get("image_encoder.patch_embed.proj.weight")
    if weight is None:
        return "not a SAM state dict"
    blocks = {
        int(m.group(1)) for k in state if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k))
    }
    shape = (int(weight.shape[0]), len(blocks))
    kind = OFFICIAL_SHAPES.get(shape)
    if kind is None:
        model = "an HQ-SAM" if hq else "a SAM"
        return f"{model} with encoder width {shape[0]} and depth {shape[1]}"
    return f"sam_hq_{kind}" if hq else kind


def _load_into(sam: Sam, state: dict[str, torch.Tensor], path: Path, name: str) -> None:
    expected = sam.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        k for k in set(expected) & set(state) if expected[k].shape != state[k].shape
    )
    if missing or unexpected or mismatched:
        found = describe_state_dict(state)
        raise WeightsError(
            f"{path} is not a {name} SAM checkpoint (it looks like {found}: "
            f"{len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(mismatched)} mis-shaped tensors)"
        )
    sam.load_state_dict(state)
