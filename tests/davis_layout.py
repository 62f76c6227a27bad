"""Test helper: write a tiny DAVIS folder layout and palette PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# A few DAVIS palette colours: index 1 is dark red, as in the real annotations.
PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128] + [255, 255, 255] * 251


def write_labels(labels: np.ndarray, path: Path) -> None:
    """Write (H, W) uint8 labels as a palette PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.asarray(labels, dtype=np.uint8), mode="P")
    image.putpalette(PALETTE)
    image.save(path)


def write_davis(
    root: Path,
    sequences: dict[str, np.ndarray],
    *,
    year: int = 2017,
    subset: str = "val",
    resolution: str = "480p",
) -> Path:
    """Write ImageSets, black JPEG frames and annotations for (T, H, W) label arrays."""
    list_path = root / "ImageSets" / str(year) / f"{subset}.txt"
    list_path.parent.mkdir(parents=True, exist_ok=True)
    list_path.write_text("".join(f"{name}\n" for name in sequences))
    for name, labels in sequences.items():
        frame_dir = root / "JPEGImages" / resolution / name
        frame_dir.mkdir(parents=True, exist_ok=True)
        for t, frame in enumerate(labels):
            Image.new("RGB", frame.shape[::-1]).save(frame_dir / f"{t:05d}.jpg")
            write_labels(frame, root / "Annotations" / resolution / name / f"{t:05d}.png")
    return root


def write_results(results: Path, sequences: dict[str, np.ndarray], frames: range | None = None):
    """Write predicted (T, H, W) labels as ``results/<seq>/<frame>.png`` (only ``frames``)."""
    for name, labels in sequences.items():
        for t in frames if frames is not None else range(len(labels)):
            write_labels(labels[t], results / name / f"{t:05d}.png")
    return results
