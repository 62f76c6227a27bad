"""SAM models: the official checkpoints, small SAM-architecture models, and ``load_sam``.

Every model is an unmodified :class:`segment_anything.modeling.Sam` built from segment-anything's
own classes, so the stock ``SamPredictor`` works on it. Small models (for tests and the bundled
demo model) are described by a :class:`SamSpec`.
"""

from __future__ import annotations

import re
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

from persam_video.fast_encoder import set_fast_attention
from persam_video.weights import CHECKPOINTS, WeightsError, ensure_checkpoint, verify_file

#: SAM's pixel normalization (ImageNet statistics in 0-255 RGB), shared by all models here.
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
LAYER_NORM_EPS = 1e-6
NUM_MULTIMASK_OUTPUTS = 3
IOU_HEAD_DEPTH = 3
MLP_RATIO = 4

#: Encoder width and depth of the official architectures, to recognise a checkpoint's kind.
_OFFICIAL_SHAPES = {(1280, 32): "vit_h", (1024, 24): "vit_l", (768, 12): "vit_b"}


@dataclass(frozen=True)
class SamSpec:
    """Architecture of a SAM built from segment-anything's classes.

    The defaults are SAM ViT-B; a small model only needs a few fields changed, e.g.
    ``SamSpec(image_size=256, encoder_dim=96, encoder_depth=4, encoder_heads=4,
    encoder_global_attn=(3,), window_size=8, decoder_dim=128, decoder_mlp_dim=512)``.
    """

    image_size: int = 1024
    patch_size: int = 16
    encoder_dim: int = 768
    encoder_depth: int = 12
    encoder_heads: int = 12
    encoder_global_attn: tuple[int, ...] = (2, 5, 8, 11)
    window_size: int = 14
    decoder_dim: int = 256
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}"
            )
        if any(not 0 <= i < self.encoder_depth for i in self.encoder_global_attn):
            raise ValueError(
                f"encoder_global_attn {self.encoder_global_attn} must index blocks "
                f"0..{self.encoder_depth - 1}"
            )

    @property
    def grid_size(self) -> int:
        """Side of the image-embedding grid (64 for the official models)."""
        return self.image_size // self.patch_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamSpec:
        data = dict(data)
        data["encoder_global_attn"] = tuple(data.get("encoder_global_attn", ()))
        return cls(**data)


def build_sam(spec: SamSpec, *, seed: int | None = None) -> Sam:
    """A randomly initialised SAM of architecture ``spec`` (in eval mode).

    ``seed`` makes the random weights reproducible without touching the global RNG.
    """
    fork = torch.random.fork_rng(devices=[]) if seed is not None else nullcontext()
    with fork:
        if seed is not None:
            torch.manual_seed(seed)
        grid = spec.grid_size
        sam = Sam(
            image_encoder=ImageEncoderViT(
                img_size=spec.image_size,
                patch_size=spec.patch_size,
                embed_dim=spec.encoder_dim,
                depth=spec.encoder_depth,
                num_heads=spec.encoder_heads,
                mlp_ratio=MLP_RATIO,
                out_chans=spec.decoder_dim,
                qkv_bias=True,
                norm_layer=partial(torch.nn.LayerNorm, eps=LAYER_NORM_EPS),
                use_rel_pos=True,
                window_size=spec.window_size,
                global_attn_indexes=spec.encoder_global_attn,
            ),
            prompt_encoder=PromptEncoder(
                embed_dim=spec.decoder_dim,
                image_embedding_size=(grid, grid),
                input_image_size=(spec.image_size, spec.image_size),
                mask_in_chans=spec.mask_in_chans,
            ),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=NUM_MULTIMASK_OUTPUTS,
                transformer=TwoWayTransformer(
                    depth=spec.decoder_depth,
                    embedding_dim=spec.decoder_dim,
                    mlp_dim=spec.decoder_mlp_dim,
                    num_heads=spec.decoder_heads,
                ),
                transformer_dim=spec.decoder_dim,
                iou_head_depth=IOU_HEAD_DEPTH,
                iou_head_hidden_dim=spec.iou_head_hidden_dim,
            ),
            pixel_mean=list(PIXEL_MEAN),
            pixel_std=list(PIXEL_STD),
        )
    return sam.eval()


def tiny_sam_spec(
    image_size: int = 128,
    encoder_dim: int = 32,
    encoder_depth: int = 2,
    decoder_dim: int = 32,
) -> SamSpec:
    """A very small architecture for mechanics tests (random weights run in milliseconds)."""
    return SamSpec(
        image_size=image_size,
        encoder_dim=encoder_dim,
        encoder_depth=encoder_depth,
        encoder_heads=2,
        encoder_global_attn=(encoder_depth - 1,),
        window_size=4,
        decoder_dim=decoder_dim,
        decoder_heads=2,
        decoder_mlp_dim=2 * decoder_dim,
        iou_head_hidden_dim=decoder_dim,
        mask_in_chans=4,
    )


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
    from persam_video.demo_model import DEMO_MODEL_NAME

    return [*CHECKPOINTS, DEMO_MODEL_NAME]


def load_sam(
    name: str = "vit_b",
    checkpoint: str | Path | None = None,
    device: str | torch.device = "auto",
    *,
    progress: bool = True,
    fast_attention: bool = True,
) -> Sam:
    """Load a SAM model in eval mode on ``device``.

    Args:
        name: ``vit_h``, ``vit_l``, ``vit_b`` (official checkpoints, downloaded and verified on
            first use) or ``demo`` (the small model bundled with persam-video).
        checkpoint: a local checkpoint file to use instead of the cache. It is checked against the
            official SHA-256 when its size is that of an official checkpoint.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        progress: show a progress bar while downloading.
        fast_attention: run the image encoder's attention through
            :class:`persam_video.fast_encoder.FastAttention` (same weights, same results, faster).
    """
    target = resolve_device(device)
    from persam_video.demo_model import DEMO_MODEL_NAME, load_demo_sam

    if name == DEMO_MODEL_NAME:
        if checkpoint is not None:
            raise WeightsError("the demo model is bundled; --checkpoint cannot be used with it")
        sam = load_demo_sam()
    else:
        sam = _load_official(name, checkpoint, progress)
    return set_fast_attention(sam.eval().to(target), enabled=fast_attention)


def _load_official(name: str, checkpoint: str | Path | None, progress: bool) -> Sam:
    """An official architecture with its verified checkpoint (downloaded on first use)."""
    if name not in CHECKPOINTS:
        raise WeightsError(f"unknown model {name!r}; known: {', '.join(model_names())}")
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
    sam = sam_model_registry[name](checkpoint=None)
    _load_into(sam, state, path, name)
    return sam


def model_metadata(name: str, checkpoint: str | Path | None = None) -> dict[str, Any]:
    """Model name, checkpoint file and its SHA-256, for results and target files.

    Official checkpoints of the official size were verified against the registry's hash when
    downloaded or loaded, so that hash is reported without reading the file again.
    """
    from persam_video.demo_model import DEMO_MODEL_NAME, DEMO_SHA256
    from persam_video.weights import checkpoint_path, sha256_of

    if name == DEMO_MODEL_NAME:
        return {"model": name, "checkpoint": None, "checkpoint_sha256": DEMO_SHA256}
    path = Path(checkpoint) if checkpoint is not None else checkpoint_path(name)
    official = CHECKPOINTS.get(name)
    if official is not None and path.is_file() and path.stat().st_size == official.size:
        digest = official.sha256
    else:
        digest = sha256_of(path) if path.is_file() else None
    return {"model": name, "checkpoint": str(path), "checkpoint_sha256": digest}


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint with ``weights_only=True`` (never unpickles arbitrary objects)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"{path} is not a loadable PyTorch checkpoint ({first[:200]})") from exc
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    return state


def describe_state_dict(state: dict[str, torch.Tensor]) -> str:
    """A short guess of the architecture a SAM state dict belongs to, for error messages."""
    weight = state.get("image_encoder.patch_embed.proj.weight")
    if weight is None:
        return "not a SAM state dict"
    blocks = {
        int(m.group(1)) for k in state if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k))
    }
    shape = (int(weight.shape[0]), len(blocks))
    kind = _OFFICIAL_SHAPES.get(shape)
    return kind or f"a SAM with encoder width {shape[0]} and depth {shape[1]}"


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
