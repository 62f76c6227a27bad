"""The memory trackers: SAM 2.1, EdgeTAM and the SAM 3 tracker through Hugging Face transformers.

A model is a folder as a hub snapshot holds it (``config.json``, the weights, the processor's
``processor_config.json``/``preprocessor_config.json``): ``--checkpoint DIR``, or downloaded
from the hub by transformers on first use (``pip install 'persam-video[sam2]'`` brings
transformers). :func:`load_memory_model` returns a :class:`MemoryModel`: the transformers
video model, its processor, and the SHA-256 of every file it was loaded from (results.json
records them).

:func:`tiny_config` builds small random configurations of each family (no download), for tests
and for the small models trained here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from persam_video.model.checkpoints import WeightsError, sha256_of

#: What to install when transformers is missing.
INSTALL_HINT = (
    "the memory engine needs transformers: pip install 'persam-video[sam2]' "
    '(from a checkout: pip install ".[sam2]")'
)
#: transformers' ``model_type`` of each family's video model.
SAM2_VIDEO, EDGETAM_VIDEO, SAM3_TRACKER_VIDEO = "sam2_video", "edgetam_video", "sam3_tracker_video"
#: Files of a model folder whose SHA-256 is recorded (the rest are not read by the loader).
RECORDED_SUFFIXES = (".json", ".safetensors", ".bin")


@dataclass(frozen=True)
class MemoryModelInfo:
    """A memory tracker persam-video knows by name."""

    name: str
    #: The model's repository on the Hugging Face hub.
    hub_id: str
    #: transformers' ``model_type`` of its video model.
    family: str
    license: str


MEMORY_MODELS: dict[str, MemoryModelInfo] = {
    info.name: info
    for info in (
        MemoryModelInfo(
            "sam2.1_hiera_tiny", "facebook/sam2.1-hiera-tiny", SAM2_VIDEO, "Apache-2.0"
        ),
        MemoryModelInfo(
            "sam2.1_hiera_small", "facebook/sam2.1-hiera-small", SAM2_VIDEO, "Apache-2.0"
        ),
        MemoryModelInfo(
            "sam2.1_hiera_base_plus", "facebook/sam2.1-hiera-base-plus", SAM2_VIDEO, "Apache-2.0"
        ),
        MemoryModelInfo(
            "sam2.1_hiera_large", "facebook/sam2.1-hiera-large", SAM2_VIDEO, "Apache-2.0"
        ),
        MemoryModelInfo("edgetam", "yonigozlan/EdgeTAM-hf", EDGETAM_VIDEO, "Apache-2.0"),
        MemoryModelInfo("sam3_tracker", "facebook/sam3", SAM3_TRACKER_VIDEO, "SAM License"),
    )
}


def is_memory_model(name: str | None) -> bool:
    """Whether ``name`` is a memory tracker (run by the memory engine, not PerSAM's cascade)."""
    return name in MEMORY_MODELS


def transformers_module() -> Any:
    """``transformers``, imported on first use (the ``sam2`` extra).

    Raises:
        MissingExtraError: transformers is not installed.
    """
    from persam_video.model.hq import MissingExtraError

    try:
        import transformers
    except ImportError as exc:
        raise MissingExtraError(f"{INSTALL_HINT} ({exc})") from exc
    return transformers


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers without its progress bars and notices (the command line has its own)."""
    logging = transformers_module().utils.logging
    bars, verbosity = logging.is_progress_bar_enabled(), logging.get_verbosity()
    logging.disable_progress_bar()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def _classes(family: str) -> tuple[Any, Any]:
    """The video model class and processor class of ``family``."""
    tf = transformers_module()
    names = {
        SAM2_VIDEO: ("Sam2VideoModel", "Sam2VideoProcessor"),
        EDGETAM_VIDEO: ("EdgeTamVideoModel", "Sam2VideoProcessor"),
        SAM3_TRACKER_VIDEO: ("Sam3TrackerVideoModel", "Sam3TrackerVideoProcessor"),
    }[family]
    try:
        return getattr(tf, names[0]), getattr(tf, names[1])
    except AttributeError as exc:
        raise WeightsError(
            f"the installed transformers {tf.__version__} has no {names[0]}: upgrade it "
            "(pip install -U transformers)"
        ) from exc


@dataclass
class MemoryModel:
    """A loaded memory tracker: the transformers video model (eval mode) and its processor."""

    name: str
    model: Any
    processor: Any
    #: The folder or hub id it was loaded from.
    source: str
    #: SHA-256 of each file of the folder it was loaded from, by file name.
    files: dict[str, str] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def info(self) -> MemoryModelInfo:
        return MEMORY_MODELS[self.name]

    def pixels(self, rgb: Any) -> torch.Tensor:
        """(3, S, S) model input of an (H, W, 3) uint8 RGB frame (the processor's resize and
        normalization)."""
        if isinstance(rgb, np.ndarray) and not rgb.flags.writeable:
            rgb = rgb.copy()  # torch.from_numpy in the processor wants a writable array
        inputs = self.processor(images=rgb, return_tensors="pt")
        return inputs.pixel_values[0].to(self.device)

    def features(self, pixels: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """The image features of one frame: the model's vision output (what its inference
        session caches) and its lowest-resolution level as (C, h, w), before any memory
        conditioning (what PerSAM's location prior compares a target with)."""
        vision = self.model.get_image_features(pixels[None], return_dict=True)
        flat = vision.fpn_hidden_states[-1]  # (h * w, 1, C)
        side = math.isqrt(flat.shape[0])
        grid = flat[:, 0].T.reshape(-1, side, side).float().cpu()
        return vision, grid

    def metadata(self) -> dict[str, Any]:
        """What results.json and target files record of the model."""
        return folder_metadata(self.name, self.source, self.files)


def folder_metadata(
    name: str, source: str | Path | None, files: dict[str, str] | None = None
) -> dict[str, Any]:
    """What results.json and target files record of the memory tracker ``name`` loaded from
    ``source`` (a model folder, or None/the hub id for the hub), with its files' SHA-256
    (``files``: already computed, else read from the folder; none for the hub)."""
    if source is None:
        source = MEMORY_MODELS[name].hub_id
    if files is None:
        folder = Path(source)
        files = recorded_files(folder) if folder.is_dir() else {}
    weights = [digest for file, digest in sorted(files.items()) if "safetensors" in file]
    return {
        "model": name,
        "checkpoint": str(source),
        "checkpoint_sha256": weights[0] if len(weights) == 1 else None,
        "files_sha256": dict(sorted(files.items())),
    }


def recorded_files(folder: Path) -> dict[str, str]:
    """The SHA-256 of each file of a model folder that the loader reads."""
    return {
        path.name: sha256_of(path)
        for path in sorted(folder.iterdir())
        if path.is_file() and path.suffix in RECORDED_SUFFIXES
    }


def load_memory_model(
    name: str, checkpoint: str | Path | None = None, device: str | torch.device = "cpu"
) -> MemoryModel:
    """Load the memory tracker ``name`` (a key of :data:`MEMORY_MODELS`) in eval mode.

    Args:
        checkpoint: a local model folder (config, weights, processor config), or None to let
            transformers fetch ``hub_id`` from the Hugging Face hub (its own cache).
        device: where the model runs.

    Raises:
        WeightsError: an unknown name, a folder that is missing, broken or of another family,
            or a download that failed (one line each).
        MissingExtraError: transformers is not installed.
    """
    if name not in MEMORY_MODELS:
        raise WeightsError(f"unknown memory model {name!r}; known: {', '.join(MEMORY_MODELS)}")
    info = MEMORY_MODELS[name]
    model_class, processor_class = _classes(info.family)
    if checkpoint is None:
        source: str | Path = info.hub_id
        files: dict[str, str] = {}
    else:
        source = Path(checkpoint)
        check_folder(source, info)
        files = recorded_files(source)
    try:
        with _quiet_transformers():
            model = model_class.from_pretrained(str(source))
            processor = processor_class.from_pretrained(str(source))
    except OSError as exc:
        where = (
            f"cannot download {info.hub_id} from the Hugging Face hub"
            if checkpoint is None
            else f"cannot load the model folder {source}"
        )
        reason = " ".join(str(exc).split())[:200]
        hint = (
            f"; download it (huggingface-cli download {info.hub_id} --local-dir DIR) and pass "
            "--checkpoint DIR"
            if checkpoint is None
            else ""
        )
        raise WeightsError(f"{where} ({reason}){hint}") from exc
    except (ValueError, RuntimeError, KeyError, TypeError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise WeightsError(f"{source} is not a usable {name} model folder ({reason})") from exc
    return MemoryModel(name, model.eval().to(device), processor, str(source), files)


def check_folder(folder: Path, info: MemoryModelInfo) -> None:
    """Refuse, in one line, a model folder that is missing or not of ``info``'s family."""
    if not folder.is_dir():
        raise WeightsError(f"model folder {folder} does not exist (a folder, not a file)")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise WeightsError(f"{folder} has no config.json: not a transformers model folder")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{config_path} is not readable JSON ({exc})") from exc
    found = config.get("model_type") if isinstance(config, dict) else None
    if found != info.family:
        raise WeightsError(
            f"{folder} holds a {found or 'unknown'} model, not {info.name} ({info.family})"
        )
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise WeightsError(f"{folder} has no weights file (*.safetensors)")


def tiny_config(family: str = SAM2_VIDEO, image_size: int = 256) -> Any:
    """A small random configuration of ``family``, built with no download, for tests and the
    small models trained here: a 128-wide prompt encoder, decoder and memory (the memory
    encoder's output stays 64 channels, as the models require) behind a small image encoder of
    the family's kind: a 1/1/2/1-block Hiera (embed dims 16/32/64/128, global attention in
    block 3) for SAM 2.1, timm's RepViT-M1 for EdgeTAM (its config built explicitly: the
    default's timm key is misspelled), a 2-block ViT with 14-px patches for the SAM 3 tracker.
    """
    tf = transformers_module()
    extra: dict[str, Any]
    if family == SAM3_TRACKER_VIDEO:
        grid = image_size // 14
        vision = tf.Sam3VisionConfig(
            backbone_config=tf.Sam3ViTConfig(
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                image_size=image_size,
                patch_size=14,
                window_size=grid,
                global_attn_indexes=[1],
                pretrain_image_size=image_size,
            ),
            fpn_hidden_size=128,
            backbone_feature_sizes=[[4 * grid, 4 * grid], [2 * grid, 2 * grid], [grid, grid]],
        )
        prompt, decoder = (
            tf.Sam3TrackerVideoPromptEncoderConfig,
            tf.Sam3TrackerVideoMaskDecoderConfig,
        )
        video, extra = tf.Sam3TrackerVideoConfig, {"memory_attention_feed_forward_hidden_size": 256}
        patch = 14
    else:
        grid, patch = image_size // 16, 16
        sizes = [[4 * grid, 4 * grid], [2 * grid, 2 * grid], [grid, grid]]
        if family == EDGETAM_VIDEO:
            backbone = tf.TimmWrapperConfig(
                architecture="repvit_m1",
                model_args={"in_chans": 3, "features_only": True, "out_indices": [0, 1, 2, 3]},
            )
            vision = tf.EdgeTamVisionConfig(
                backbone_config=backbone,
                backbone_channel_list=[384, 192, 96, 48],
                backbone_feature_sizes=sizes,
                fpn_hidden_size=128,
            )
            prompt, decoder = tf.EdgeTamVideoPromptEncoderConfig, tf.EdgeTamVideoMaskDecoderConfig
            video = tf.EdgeTamVideoConfig
            extra = {
                "memory_attention_mlp_hidden_size": 256,
                "memory_attention_rope_k_sizes": [4, 4],
            }
        elif family == SAM2_VIDEO:
            hiera = tf.Sam2HieraDetConfig(
                hidden_size=16,
                num_attention_heads=1,
                image_size=[image_size, image_size],
                blocks_per_stage=[1, 1, 2, 1],
                embed_dim_per_stage=[16, 32, 64, 128],
                num_attention_heads_per_stage=[1, 2, 4, 8],
                window_size_per_stage=[8, 4, 14, 7],
                global_attention_blocks=[3],
                window_positional_embedding_background_size=[7, 7],
            )
            vision = tf.Sam2VisionConfig(
                backbone_config=hiera,
                backbone_channel_list=[128, 64, 32, 16],
                backbone_feature_sizes=sizes,
                fpn_hidden_size=128,
            )
            prompt, decoder = tf.Sam2VideoPromptEncoderConfig, tf.Sam2VideoMaskDecoderConfig
            video, extra = tf.Sam2VideoConfig, {}
        else:
            raise ValueError(f"unknown memory model family {family!r}")
    return video(
        vision_config=vision,
        prompt_encoder_config=prompt(hidden_size=128, image_size=image_size, patch_size=patch),
        mask_decoder_config=decoder(
            hidden_size=128, num_attention_heads=4, mlp_dim=256, iou_head_hidden_dim=128
        ),
        image_size=image_size,
        memory_attention_hidden_size=128,
        memory_attention_num_layers=1,
        memory_attention_rope_feat_sizes=[grid, grid],
        memory_encoder_hidden_size=128,
        memory_encoder_output_channels=64,
        memory_fuser_embed_dim=128,
        memory_fuser_intermediate_dim=256,
        mask_downsampler_embed_dim=128,
        **extra,
    )


def random_model(config: Any, name: str | None = None, *, seed: int = 0) -> MemoryModel:
    """A randomly initialised video model of ``config`` and its processor, in memory (for
    tests and speed measurements; random weights are no tracker). ``name``: the memory
    tracker it stands for (default: the first of its family)."""
    model_class, processor_class = _classes(config.model_type)
    tf = transformers_module()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config).eval()
    size = {"height": config.image_size, "width": config.image_size}
    processor = processor_class(
        image_processor=tf.Sam2ImageProcessor(size=size),
        video_processor=tf.Sam2VideoVideoProcessor(size=size),
        target_size=config.image_size,
    )
    if name is None:
        name = next(n for n, info in MEMORY_MODELS.items() if info.family == config.model_type)
    return MemoryModel(name, model, processor, f"random weights (seed {seed})")


def save_random_model(folder: str | Path, config: Any, *, seed: int = 0) -> Path:
    """Write a randomly initialised video model of ``config`` and its processor to ``folder``
    as a hub snapshot holds them (for tests and benchmarks; random weights are no tracker)."""
    made = random_model(config, seed=seed)
    folder = Path(folder)
    with _quiet_transformers():
        made.model.save_pretrained(str(folder))
        made.processor.save_pretrained(str(folder))
    return folder
