"""Mask outputs in three formats: DAVIS palette PNGs, per-object binary PNGs, COCO RLE lines.

- ``davis`` (default): ``masks/00000.png``, one palette PNG per frame whose indices are the
  object ids (the DAVIS layout; :func:`~persam_video.io.masks.write_label_png`).
- ``per-object-png``: ``masks/<id>/00000.png``, one binary PNG per frame and object (0 and
  255, grayscale), every object on every frame (all black where it is absent).
- ``coco-rle``: ``masks.jsonl``, one JSON line per frame and object with the mask as COCO's
  compressed run-length encoding (``pycocotools``), its area, its COCO box
  ``[x, y, width, height]`` and the tracker's score; ``pycocotools.mask.decode`` gives the
  mask back exactly.

Every writer works in a temporary place (``.masks.partial-<pid>``) that the caller moves into
place with the run's other outputs (:func:`persam_video.atomic.commit`). Frames may come in any
order (each PNG is named, each line carries its frame index).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from PIL import Image

from persam_video.atomic import discard, temp_path
from persam_video.io.masks import write_label_png

MaskFormat = Literal["davis", "per-object-png", "coco-rle"]
MASK_FORMATS: tuple[str, ...] = ("davis", "per-object-png", "coco-rle")
#: Output names (relative to the output folder) of each format.
FORMAT_NAMES: dict[str, str] = {
    "davis": "masks",
    "per-object-png": "masks",
    "coco-rle": "masks.jsonl",
}
MASK_NAME_FORMAT = "{:05d}.png"
#: Pixel value of an object in a per-object binary PNG.
BINARY_ON = 255


class MaskWriter(Protocol):
    """Writes one frame's masks; :attr:`temporary` is moved to the final name by the caller."""

    temporary: Path

    def write(self, index: int, labels: np.ndarray, scores: Mapping[int, float]) -> None:
        """Write frame ``index``: ``labels`` (H, W) uint8 label map, ``scores`` per object id."""

    def close(self) -> None:
        """Finish writing (the output stays at :attr:`temporary`)."""

    def abort(self) -> None:
        """Delete everything written."""


class _FolderWriter:
    def __init__(self, final: Path) -> None:
        self.temporary = temp_path(final, folder=True)
        self.temporary.mkdir()

    def close(self) -> None:
        pass

    def abort(self) -> None:
        discard(self.temporary)


class DavisMaskWriter(_FolderWriter):
    """``masks/00000.png``: DAVIS palette PNGs (indices are the object ids)."""

    def write(self, index: int, labels: np.ndarray, scores: Mapping[int, float]) -> None:
        write_label_png(self.temporary / MASK_NAME_FORMAT.format(index), labels)


class PerObjectMaskWriter(_FolderWriter):
    """``masks/<id>/00000.png``: a binary PNG (0/255) per object and frame."""

    def __init__(self, final: Path, object_ids: Sequence[int]) -> None:
        super().__init__(final)
        self.object_ids = list(object_ids)
        for obj_id in self.object_ids:
            (self.temporary / str(obj_id)).mkdir()

    def write(self, index: int, labels: np.ndarray, scores: Mapping[int, float]) -> None:
        name = MASK_NAME_FORMAT.format(index)
        for obj_id in self.object_ids:
            binary = np.where(labels == obj_id, BINARY_ON, 0).astype(np.uint8)
            path = self.temporary / str(obj_id) / name
            Image.fromarray(binary, mode="L").save(path, format="PNG", optimize=False)


class CocoRleWriter:
    """``masks.jsonl``: one line per frame and object (COCO RLE, area, box, score)."""

    def __init__(self, final: Path, object_ids: Sequence[int]) -> None:
        from pycocotools import mask as coco_mask  # imported only when this format is asked

        self._coco = coco_mask
        self.object_ids = list(object_ids)
        self.temporary = temp_path(final)
        self._file = open(self.temporary, "w", encoding="utf-8")

    def write(self, index: int, labels: np.ndarray, scores: Mapping[int, float]) -> None:
        for obj_id in self.object_ids:
            self._file.write(json.dumps(rle_record(self._coco, index, obj_id, labels, scores)))
            self._file.write("\n")

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        discard(self.temporary)


def rle_record(
    coco: object, index: int, obj_id: int, labels: np.ndarray, scores: Mapping[int, float]
) -> dict[str, object]:
    """The ``masks.jsonl`` record of one object on one frame."""
    mask = np.asfortranarray(labels == obj_id, dtype=np.uint8)
    rle = coco.encode(mask)
    area = int(coco.area(rle))
    score = scores.get(obj_id)
    return {
        "frame": index,
        "object_id": obj_id,
        "segmentation": {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")},
        "area": area,
        "bbox": [float(v) for v in coco.toBbox(rle)] if area else None,
        "score": round(float(score), 6) if score is not None and np.isfinite(score) else None,
    }


def open_mask_writer(fmt: str, final: Path, object_ids: Sequence[int]) -> MaskWriter:
    """A writer of format ``fmt`` (one of :data:`MASK_FORMATS`) whose output becomes ``final``.

    Raises:
        ValueError: an unknown format, or ``coco-rle`` without pycocotools installed.
    """
    if fmt == "davis":
        return DavisMaskWriter(final)
    if fmt == "per-object-png":
        return PerObjectMaskWriter(final, object_ids)
    if fmt == "coco-rle":
        try:
            return CocoRleWriter(final, object_ids)
        except ImportError:
            raise ValueError(
                "the coco-rle format needs pycocotools: pip install pycocotools"
            ) from None
    raise ValueError(f"unknown mask format {fmt!r}; use {', '.join(MASK_FORMATS)}")
