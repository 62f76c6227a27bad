"""Test helpers: synthetic images and masks, and stock encoding."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from segment_anything.modeling import Sam

from persam_video.persam.encoder import FrameEncoder
from persam_video.persam.features import FrameFeatures

#: The repository's root folder (tests/ is right below it).
REPO_ROOT = Path(__file__).resolve().parents[1]


def encode_image(sam: Sam, rgb: np.ndarray) -> FrameFeatures:
    """SAM features of a frame with segment-anything's own encoder, as ``SamPredictor.set_image``
    computes them."""
    return FrameEncoder(sam, attention="stock").encode(rgb)


def random_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """An (H, W, 3) uint8 image: smooth colour blobs plus noise, so features vary spatially."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.zeros((height, width, 3), np.float32)
    for _ in range(4):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        radius = rng.uniform(0.15, 0.4) * max(height, width)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
        image += blob[..., None] * rng.uniform(0, 255, 3)
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def ellipse_mask(height: int, width: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    """(H, W) bool filled ellipse."""
    yy, xx = np.mgrid[0:height, 0:width]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


#: Size and length of the clip a test interrupts: long enough not to finish before the signal.
LONG_TRACK_SIZE = (96, 128)
LONG_TRACK_FRAMES = 400
#: How long to wait for the interrupted track to write its first frames.
LONG_TRACK_WAIT_S = 120


def start_long_track(tmp_path: Path, *, frames_written: int, capture: bool):
    """Start ``persam-video track`` (demo model, one thread) on a long generated clip in a
    subprocess and return once its temporary masks folder holds ``frames_written`` PNGs.

    Returns ``(process, video, mask, out)``; with ``capture`` the process's stdout and stderr
    are pipes (text), else discarded. Fails the test if no frames come in time.
    """
    import os
    import subprocess
    import sys
    import time

    import pytest

    from persam_video.atomic import STAGING_PREFIX
    from persam_video.io import write_label_png
    from tests.video_factory import make_video, synthetic_labels

    video = tmp_path / "long.mp4"
    make_video(video, n_frames=LONG_TRACK_FRAMES, size_hw=LONG_TRACK_SIZE)
    mask = tmp_path / "m.png"
    write_label_png(mask, synthetic_labels(0, LONG_TRACK_SIZE))
    out = tmp_path / "out"
    env = {**os.environ, "PERSAM_VIDEO_THREADS": "1"}
    pipe = subprocess.PIPE if capture else subprocess.DEVNULL
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "persam_video.cli",
            "track",
            str(video),
            "--mask",
            str(mask),
            "--out",
            str(out),
            "--model",
            "demo",
            "-q",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=pipe,
        stderr=pipe,
        text=True,
    )
    deadline = time.monotonic() + LONG_TRACK_WAIT_S
    while time.monotonic() < deadline:
        temporaries = list(out.glob(f"{STAGING_PREFIX}*/masks")) if out.is_dir() else []
        if temporaries and len(list(temporaries[0].iterdir())) >= frames_written:
            return process, video, mask, out
        time.sleep(0.2)
    process.kill()
    pytest.fail("the track wrote no frames in time")


def leftovers(folder: Path) -> list[Path]:
    """Hidden entries of an output folder other than the record of its outputs: what a run
    must not leave behind (temporaries, a lock)."""
    from persam_video.atomic import MANIFEST_NAME

    return [p for p in folder.iterdir() if p.name.startswith(".") and p.name != MANIFEST_NAME]


def entries(folder: Path) -> list[str]:
    """The sorted names in an output folder, less the record of its outputs."""
    from persam_video.atomic import MANIFEST_NAME

    return sorted(p.name for p in folder.iterdir() if p.name != MANIFEST_NAME)


#: (H, W) of the small clips the output-folder tests track.
SMALL_CLIP_SIZE = (48, 64)


def small_clip(folder: Path, n_frames: int = 4) -> tuple[Path, Path]:
    """A small video and its first frame's mask in ``folder``: ``(clip.mp4, m.png)``."""
    from persam_video.io import write_label_png
    from tests.video_factory import make_video, synthetic_labels

    video = folder / "clip.mp4"
    make_video(video, n_frames=n_frames, size_hw=SMALL_CLIP_SIZE)
    mask = folder / "m.png"
    write_label_png(mask, synthetic_labels(0, SMALL_CLIP_SIZE))
    return video, mask


def dead_pid() -> int:
    """The pid of a process that has exited."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def small_frames(folder: Path, n_frames: int) -> tuple[Path, Path]:
    """A folder of ``n_frames`` flat PNG frames (grey levels 0, 40, 80, ...) and a first-frame
    mask beside it: ``(folder/frames, folder/m.png)``."""
    import numpy as np
    from PIL import Image

    from persam_video.io import write_label_png
    from tests.video_factory import synthetic_labels

    frames = folder / "frames"
    frames.mkdir()
    for i in range(n_frames):
        grey = np.full((*SMALL_CLIP_SIZE, 3), 40 * i, np.uint8)
        Image.fromarray(grey).save(frames / f"{i}.png")
    mask = folder / "m.png"
    write_label_png(mask, synthetic_labels(0, SMALL_CLIP_SIZE))
    return frames, mask


def tiny_hq_sam(seed: int = 0, image_size: int = 128, dim: int = 32) -> Sam:
    """A small HQ-SAM (segment-anything-hq's own classes, random weights, eval mode): a 2-block
    ViT whose second block is global (its output is the decoder's early-layer feature), and
    ``MaskDecoderHQ``. Needs the hq extra."""
    from functools import partial

    import torch

    from persam_video.model.hq import hq_package

    hq_package()  # imports it with timm's import-time warnings silenced
    from segment_anything_hq.modeling import (
        ImageEncoderViT,
        MaskDecoderHQ,
        PromptEncoder,
        TwoWayTransformer,
    )
    from segment_anything_hq.modeling import Sam as HQSam

    grid = image_size // 16
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = HQSam(
            image_encoder=ImageEncoderViT(
                img_size=image_size,
                patch_size=16,
                embed_dim=dim,
                depth=2,
                num_heads=2,
                mlp_ratio=4,
                out_chans=dim,
                qkv_bias=True,
                norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                use_rel_pos=True,
                window_size=4,
                global_attn_indexes=(1,),
            ),
            prompt_encoder=PromptEncoder(
                embed_dim=dim,
                image_embedding_size=(grid, grid),
                input_image_size=(image_size, image_size),
                mask_in_chans=4,
            ),
            mask_decoder=MaskDecoderHQ(
                num_multimask_outputs=3,
                transformer=TwoWayTransformer(
                    depth=2, embedding_dim=dim, mlp_dim=2 * dim, num_heads=2
                ),
                transformer_dim=dim,
                iou_head_depth=3,
                iou_head_hidden_dim=dim,
                vit_dim=dim,
            ),
            pixel_mean=[123.675, 116.28, 103.53],
            pixel_std=[58.395, 57.12, 57.375],
        )
    return sam.eval()


def personalize_segment_find(tmp_path: Path, video: Path, model_args: list[str], name: str) -> Path:
    """Through the command line with ``model_args``: personalize frame 1's object 1 of
    ``video``, segment that photo with the target and find it in ``video``; assert each step
    succeeds (results naming model ``name``) and return the target file."""
    import json

    import numpy as np
    from click.testing import CliRunner

    from persam_video.cli import cli
    from persam_video.io import write_label_png
    from tests.video_factory import synthetic_labels

    photo, mask = tmp_path / "ref.png", tmp_path / "ref_mask.png"
    assert CliRunner().invoke(cli, ["frame", str(video), "1", "-o", str(photo)]).exit_code == 0
    write_label_png(mask, (synthetic_labels(1, (72, 96)) == 1).astype(np.uint8))
    target = tmp_path / "obj.target"
    made = CliRunner().invoke(
        cli, ["personalize", str(photo), "--mask", str(mask), "-o", str(target), *model_args]
    )
    assert made.exit_code == 0, made.output
    segment = ["segment", str(photo), "--target", str(target), "--out", str(tmp_path / "seg")]
    found = CliRunner().invoke(cli, [*segment, *model_args])
    assert found.exit_code == 0, found.output
    assert json.loads((tmp_path / "seg" / "results.json").read_text())["run"]["model"] == name
    find = ["find", str(video), "--target", str(target), "--out", str(tmp_path / "find")]
    searched = CliRunner().invoke(cli, [*find, *model_args])
    assert searched.exit_code == 0, searched.output
    assert (tmp_path / "find" / "found.json").is_file()
    return target


def loaded_tool(name: str) -> Iterator[Any]:
    """``tools/<name>.py`` imported as module ``name`` (with ``tools/`` on ``sys.path``, as when
    it runs), for a module-scoped fixture: ``yield from loaded_tool("bench_memory")``."""
    import importlib.util
    import sys

    folder = str(REPO_ROOT / "tools")
    sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[name]
        sys.path.remove(folder)
