"""Time the DAVIS evaluation on a synthetic data set the size of DAVIS 2017 val.

Builds, in a temporary folder, a DAVIS layout of moving random ellipses (default: 30 sequences of
70 frames at 854x480 with 2 objects each) and predictions made by perturbing the ground truth,
then times :func:`persam_video.eval.evaluate.evaluate_davis` on it (building the data set is not
timed). From the repository root, with the package installed or on the path::

    PYTHONPATH=. python tools/bench_eval.py [--sequences 30] [--frames 70] [--objects 2]

The frames are one constant JPEG copied: the evaluation never decodes them.
"""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from persam_video.eval.davis_dataset import DavisDataset
from persam_video.eval.evaluate import evaluate_davis
from persam_video.labels import VOID_ID

DAVIS_SIZE = (480, 854)  # (H, W) of DAVIS 480p
JPEG_GRAY = 128
# Share of sequences whose annotations get a void (255) band, as a few DAVIS frames have.
VOID_SEQUENCE_SHARE = 0.2
# Per-frame chance that a predicted object is dropped entirely.
DROP_OBJECT_CHANCE = 0.05


def davis_palette() -> list[int]:
    """The PASCAL VOC palette used by DAVIS annotations, as 768 RGB values."""
    palette = []
    for index in range(256):
        red = green = blue = 0
        code = index
        for bit in range(8):
            red |= ((code >> 0) & 1) << (7 - bit)
            green |= ((code >> 1) & 1) << (7 - bit)
            blue |= ((code >> 2) & 1) << (7 - bit)
            code >>= 3
        palette += [red, green, blue]
    return palette


def write_label_png(labels: np.ndarray, path: Path, palette: list[int]) -> None:
    """Write (H, W) uint8 labels as a palette PNG."""
    image = Image.fromarray(labels, mode="P")
    image.putpalette(palette)
    image.save(path)


def moving_ellipses(
    rng: np.random.Generator, n_frames: int, size: tuple[int, int], n_objects: int
) -> np.ndarray:
    """(T, H, W) uint8 labels of ``n_objects`` ellipses moving and growing linearly."""
    height, width = size
    labels = np.zeros((n_frames, height, width), dtype=np.uint8)
    for object_id in range(1, n_objects + 1):
        start = rng.uniform((0.2 * width, 0.2 * height), (0.8 * width, 0.8 * height))
        velocity = rng.uniform(-3.0, 3.0, size=2)
        axes = rng.uniform(0.05, 0.25, size=2) * (width, height)
        growth = rng.uniform(-0.3, 0.3, size=2)
        angle = rng.uniform(0, 180)
        for t in range(n_frames):
            center = np.round(start + t * velocity).astype(int)
            half_axes = np.maximum(np.round(axes + t * growth), 1).astype(int)
            cv2.ellipse(
                labels[t],
                tuple(center.tolist()),
                tuple(half_axes.tolist()),
                angle + t,
                0,
                360,
                object_id,
                thickness=-1,
            )
    return labels


def perturb(rng: np.random.Generator, labels: np.ndarray, n_objects: int) -> np.ndarray:
    """Predictions: ground truth shifted, eroded or dilated per object, sometimes dropped."""
    pred = np.zeros_like(labels)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    for t, frame in enumerate(labels):
        for object_id in range(1, n_objects + 1):
            if rng.random() < DROP_OBJECT_CHANCE:
                continue
            mask = (frame == object_id).astype(np.uint8)
            mask = np.roll(mask, tuple(rng.integers(-4, 5, size=2)), axis=(0, 1))
            operation = rng.integers(3)
            if operation == 1:
                mask = cv2.erode(mask, kernel)
            elif operation == 2:
                mask = cv2.dilate(mask, kernel)
            pred[t][mask > 0] = object_id
    return pred


def build_synthetic_davis(
    root: Path,
    n_sequences: int = 30,
    n_frames: int = 70,
    n_objects: int = 2,
    size: tuple[int, int] = DAVIS_SIZE,
    seed: int = 0,
) -> Path:
    """Write a DAVIS 2017 layout under ``root`` and predictions under ``root/results``.

    Returns:
        The results folder.
    """
    rng = np.random.default_rng(seed)
    palette = davis_palette()
    buffer = io.BytesIO()
    Image.new("RGB", size[::-1], (JPEG_GRAY,) * 3).save(buffer, format="JPEG")
    jpeg = buffer.getvalue()
    results = root / "results"
    names = [f"synthetic-{index:03d}" for index in range(n_sequences)]
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(names) + "\n")
    for seq in names:
        frame_dir = root / "JPEGImages" / "480p" / seq
        annotation_dir = root / "Annotations" / "480p" / seq
        for folder in (frame_dir, annotation_dir, results / seq):
            folder.mkdir(parents=True)
        labels = moving_ellipses(rng, n_frames, size, n_objects)
        pred = perturb(rng, labels, n_objects)
        if rng.random() < VOID_SEQUENCE_SHARE:
            labels[:, size[0] // 2 : size[0] // 2 + 4] = VOID_ID
        for t in range(n_frames):
            (frame_dir / f"{t:05d}.jpg").write_bytes(jpeg)
            write_label_png(labels[t], annotation_dir / f"{t:05d}.png", palette)
            write_label_png(pred[t], results / seq / f"{t:05d}.png", palette)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequences", type=int, default=30)
    parser.add_argument("--frames", type=int, default=70)
    parser.add_argument("--objects", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="build the data set here and keep it")
    args = parser.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="davis_bench_"))
    try:
        start = time.perf_counter()
        results = build_synthetic_davis(
            root, args.sequences, args.frames, args.objects, seed=args.seed
        )
        built = time.perf_counter() - start
        print(f"built {args.sequences} sequences x {args.frames} frames in {built:.1f}s")
        start = time.perf_counter()
        report = evaluate_davis(DavisDataset(root), results, progress=False)
        elapsed = time.perf_counter() - start
        print(report.format_table().split("\n\n")[0])
        print(f"evaluation: {elapsed:.2f}s for {len(report.objects)} objects")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
