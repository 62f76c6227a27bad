"""Find a saved target in a collection of images (PerSAM's original use: your pet in an album).

For each image: ``<name>.png`` (palette mask, object id 1, empty when the target is not
confidently found: the ``presence`` thresholds), ``<name>_overlay.jpg``, and one
``results.json`` for the collection.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from segment_anything.modeling import Sam

from persam_video.apps import visualize
from persam_video.apps.outputs import finite_or_none, versions
from persam_video.atomic import (
    OutputClaim,
    check_not_overwriting,
    commit,
    discard,
    run_folder,
    temp_path,
)
from persam_video.config import PerSAMConfig
from persam_video.io import image_size_hw, list_images, read_image, write_label_png
from persam_video.persam import PerSAM, Target
from persam_video.persam.rules import is_found
from persam_video.progress import progress_bar

TARGET_ID = 1
OVERLAY_SUFFIX = "_overlay.jpg"
OVERLAY_JPEG_QUALITY = 90
RESULTS_NAME = "results.json"
#: The command recorded as the owner of a segment output folder.
SEGMENT_COMMAND = "segment"


@dataclass
class ImagesSummary:
    images: int
    found: int


def collect_images(inputs: list[str] | tuple[str, ...]) -> list[Path]:
    """Image files named directly or found in folders (natural order); duplicate names refused."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = list_images(path)
            if not found:
                raise ValueError(f"folder {path} holds no images")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(f"image {path} does not exist")
    stems = [f.stem for f in files]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise ValueError(f"several images are named {twice[0]!r}: their outputs would collide")
    return files


def image_outputs(files: list[Path], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Every file :func:`segment_images` writes for ``files`` in ``out_dir``."""
    out = Path(out_dir)
    per_image = [out / f"{f.stem}{suffix}" for f in files for suffix in (".png", OVERLAY_SUFFIX)]
    return [*per_image, out / RESULTS_NAME]


def check_images_survive(
    inputs: list[str] | tuple[str, ...], out_dir: str | os.PathLike[str]
) -> list[Path]:
    """The image files of ``inputs`` (see :func:`collect_images`), after refusing an ``out_dir``
    whose outputs would overwrite one of them (``segment album --out album``)."""
    files = collect_images(inputs)
    folders = [Path(item) for item in inputs if Path(item).is_dir()]
    check_not_overwriting([*files, *folders], image_outputs(files, out_dir))
    return files


def segment_images(
    sam: Sam,
    config: PerSAMConfig,
    target: Target,
    inputs: list[str] | tuple[str, ...],
    out_dir: str | os.PathLike[str],
    *,
    progress: bool = True,
    metadata: dict[str, Any] | None = None,
) -> ImagesSummary:
    """Segment ``target`` in every image of ``inputs`` and write the outputs to ``out_dir``.

    ``metadata`` (e.g. the model and checkpoint hash) goes into results.json's ``run`` record,
    with the config, the device and the library versions.
    """
    files = check_images_survive(inputs, out_dir)
    for path in files:  # every image readable before anything is written
        image_size_hw(path)
    names = [path.name for path in image_outputs(files, out_dir)]
    with run_folder(out_dir, SEGMENT_COMMAND, names) as claim:
        return _segment_locked(sam, config, target, files, claim, progress, metadata or {})


def _segment_locked(
    sam: Sam,
    config: PerSAMConfig,
    target: Target,
    files: list[Path],
    claim: OutputClaim,
    progress: bool,
    metadata: dict[str, Any],
) -> ImagesSummary:
    """:func:`segment_images` once the output folder is locked: every output is written under
    a temporary name and all move into place together at the end (results.json last), so a
    failure on any image leaves no output of this run."""
    out = claim.folder
    persam = PerSAM(sam, config)
    records = []
    moves: list[tuple[Path, Path]] = []
    try:
        for path in progress_bar(files, desc="segmenting", unit="image", enabled=progress):
            rgb = read_image(path)
            (pred,) = persam.segment_features(persam.encode(rgb), [target])
            found = is_found(pred, config.presence)
            labels = np.where(pred.mask.cpu().numpy() & found, TARGET_ID, 0).astype(np.uint8)
            mask = out / f"{path.stem}.png"
            moves.append((temp_path(mask), mask))
            write_label_png(moves[-1][0], labels)
            overlay = out / f"{path.stem}{OVERLAY_SUFFIX}"
            moves.append((temp_path(overlay), overlay))
            Image.fromarray(visualize.overlay(rgb, labels)).save(
                moves[-1][0], format="JPEG", quality=OVERLAY_JPEG_QUALITY
            )
            records.append(
                {
                    "image": str(path),
                    "found": found,
                    "score": finite_or_none(pred.score),
                    "peak_similarity": finite_or_none(pred.peak_similarity),
                    "area": int(labels.sum()),
                }
            )
        run = {
            **metadata,
            "config": config.to_dict(),
            "device": str(sam.device),
            "encoder": persam.encoder.settings(),
            "versions": versions(),
        }
        document = {
            "format": "persam-video image results",
            "format_version": 1,
            "run": run,
            "images": records,
        }
        results = out / RESULTS_NAME
        moves.append((temp_path(results), results))
        moves[-1][0].write_text(json.dumps(document, indent=1, allow_nan=False), "utf-8")
        commit(moves, claim=claim)
    except BaseException:
        for tmp, _ in moves:
            discard(tmp)
        raise
    return ImagesSummary(images=len(files), found=sum(bool(r["found"]) for r in records))
