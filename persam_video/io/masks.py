"""Annotation masks: reading, normalising, resizing and writing label maps.

A *label map* is a ``(H, W)`` ``uint8`` array (see :mod:`persam_video.labels`, where the rules
for ids live): ``0`` is background, ``1..254`` are object ids and ``255`` is DAVIS's "void".

Rules for reading mask files into label maps
--------------------------------------------
In-memory arrays follow :mod:`persam_video.labels` (:func:`~persam_video.labels.to_label_map`).

Files (:func:`read_mask`):

* Palette ("P" mode) PNG: the palette *indices* are the ids (DAVIS convention), whatever the
  palette colours are; ``255`` stays void.
* Grayscale / 1-bit / 16-bit images: the pixel values go through :func:`to_label_map`.
  With an alpha channel ("LA"), fully transparent pixels are background.
* RGB(A) images: black ``(0, 0, 0)`` (and, with alpha, fully transparent pixels) is
  background. If *every* other colour is a :data:`DAVIS_PALETTE` colour, each maps to its
  palette index (so a DAVIS annotation saved as RGB keeps its ids). Otherwise *all* other
  colours are numbered ``1..K`` in order of first appearance in a row-major scan.
* JPEG files are refused: JPEG compression invents thousands of intermediate colours along
  edges, which would silently become extra objects.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from persam_video.atomic import atomic_file
from persam_video.io.orientation import upright
from persam_video.labels import (
    BACKGROUND_ID,
    MAX_OBJECTS,
    MaskError,
    MaskSources,
    as_uint8_labels,
    object_ids,
    to_label_map,
)

PALETTE_SIZE = 256
BITS_PER_CHANNEL = 8
LOSSY_FORMATS = frozenset({"JPEG", "MPO"})


def _make_davis_palette() -> np.ndarray:
    """The PASCAL VOC / DAVIS colour map: bits of the index are dealt to R, G, B in turn.

    Bit ``3k`` of the index becomes bit ``7 - k`` of red, bit ``3k + 1`` bit ``7 - k`` of
    green and bit ``3k + 2`` bit ``7 - k`` of blue.
    """
    index = np.arange(PALETTE_SIZE, dtype=np.int64)
    palette = np.zeros((PALETTE_SIZE, 3), dtype=np.int64)
    for k in range(BITS_PER_CHANNEL):
        for channel in range(3):
            bit = (index >> (3 * k + channel)) & 1
            palette[:, channel] |= bit << (BITS_PER_CHANNEL - 1 - k)
    palette = palette.astype(np.uint8)
    palette.setflags(write=False)
    return palette


DAVIS_PALETTE: np.ndarray = _make_davis_palette()
"""``(256, 3)`` ``uint8`` read-only array; row ``i`` is the RGB colour of id ``i``."""


@functools.cache
def _palette_lookup() -> dict[int, int]:
    """Packed ``0xRRGGBB`` colour -> DAVIS id, for ids 1..255."""
    packed = _pack_rgb(DAVIS_PALETTE.reshape(1, PALETTE_SIZE, 3)).ravel()
    return {int(colour): idx for idx, colour in enumerate(packed) if idx != BACKGROUND_ID}


def _pack_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _colour_label_map(rgb: np.ndarray, path: Path) -> np.ndarray:
    """Label map from an ``(H, W, 3)`` uint8 colour mask (0 = black background)."""
    packed = _pack_rgb(rgb).ravel()
    colours, first_index, inverse = np.unique(packed, return_index=True, return_inverse=True)
    foreground = colours != 0
    if foreground.sum() > MAX_OBJECTS:
        raise MaskError(
            f"{path}: colour mask has {int(foreground.sum())} distinct colours; expected at most "
            f"{MAX_OBJECTS} flat colours (save masks as PNG without anti-aliasing)"
        )
    lookup = _palette_lookup()
    ids = np.zeros(len(colours), dtype=np.uint8)
    if all(int(c) in lookup for c in colours[foreground]):
        for i in np.flatnonzero(foreground):
            ids[i] = lookup[int(colours[i])]
    else:
        order = np.flatnonzero(foreground)[np.argsort(first_index[foreground], kind="stable")]
        ids[order] = np.arange(1, len(order) + 1, dtype=np.uint8)
    return ids[inverse].reshape(rgb.shape[:2])


def _open_image(path: Path) -> Image.Image:
    if not path.is_file():
        reason = "is a folder" if path.is_dir() else "does not exist"
        raise MaskError(f"{path}: mask file {reason}; expected a PNG mask image")
    try:
        opened = Image.open(path)
        opened.load()
        image = upright(opened)  # as viewers show it, so it lines up with upright frames
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as error:
        raise MaskError(f"{path}: cannot read mask image ({error}); expected a PNG") from None
    return image


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a mask image as a label map, following the rules in the module docstring.

    Args:
        path: palette, grayscale, 1-bit, 16-bit or RGB(A) image (PNG recommended).

    Returns:
        ``(H, W)`` ``uint8`` label map.

    Raises:
        MaskError: missing or unreadable file, JPEG file, or content that is not a mask.
    """
    return read_mask_sources(path)[0]


def read_mask_sources(path: str | os.PathLike[str]) -> tuple[np.ndarray, MaskSources]:
    """:func:`read_mask`, and what each object id was in the file.

    Returns:
        The ``(H, W)`` ``uint8`` label map, and a :class:`MaskSources`: the file's kind
        (``palette``, ``gray`` or ``colour``) and, per object id, its pixel value or colour
        there (e.g. ``"(255, 0, 0)"``), so a renumbering can be reported.
    """
    path = Path(path)
    image = _open_image(path)
    labels, raw = _read_labels(image, path)
    kind = "palette" if image.mode == "P" else "colour" if raw.ndim == 3 else "gray"
    return labels, MaskSources(kind, _id_sources(labels, raw))


def _id_sources(labels: np.ndarray, raw: np.ndarray) -> tuple[tuple[int, str], ...]:
    """(id, file value) of each object id of ``labels``, from the file's ``raw`` pixels."""
    found = {}
    flat = raw.reshape(-1, raw.shape[-1]) if raw.ndim == 3 else raw.reshape(-1, 1)
    ids = labels.reshape(-1)
    for obj_id in object_ids(labels):
        first = int(np.flatnonzero(ids == obj_id)[0])
        value = tuple(int(v) for v in flat[first])
        found[obj_id] = str(value[0]) if len(value) == 1 else str(value)
    return tuple(sorted(found.items()))


def _read_labels(image: Image.Image, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The label map of an opened mask image, and its raw pixels ((H, W) values or (H, W, 3)
    colours; palette images give their indices)."""
    image = _open_image(path)
    if image.format in LOSSY_FORMATS:
        raise MaskError(
            f"{path}: JPEG masks are lossy (compression adds false colours at edges); "
            "save the mask as PNG"
        )
    mode = image.mode
    try:
        if mode == "P":
            indices = np.array(image, dtype=np.uint8)
            return indices, indices
        if mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "F"):
            values = np.array(image)
            return to_label_map(values), values
        if mode == "LA":
            gray_alpha = np.array(image)
            values = np.where(gray_alpha[..., 1] == 0, 0, gray_alpha[..., 0])
            return to_label_map(values), values
        rgba = np.array(image.convert("RGBA"))
    except MaskError as error:
        raise MaskError(f"{path}: {error}") from None
    rgb = np.where(rgba[..., 3:] == 0, 0, rgba[..., :3]).astype(np.uint8)
    return _colour_label_map(rgb, path), rgb


def write_label_png(
    path: str | os.PathLike[str],
    labels: np.ndarray,
    palette: np.ndarray = DAVIS_PALETTE,
) -> None:
    """Write a label map as a palette PNG, atomically.

    The image is written to a temporary file beside it and then moved into place (see
    :func:`persam_video.atomic.atomic_file`), so ``path`` never holds a half-written PNG.

    Args:
        path: destination file; its folder must exist.
        labels: ``(H, W)`` integer array with ids in ``0..255``.
        palette: ``(N, 3)`` ``uint8`` colours, ``N <= 256``; row ``i`` colours id ``i``.
    """
    values = as_uint8_labels(labels)
    colours = np.asarray(palette)
    if colours.ndim != 2 or colours.shape[1] != 3 or not 0 < len(colours) <= PALETTE_SIZE:
        raise MaskError(f"palette has shape {colours.shape}; expected (N, 3) with N <= 256")
    if values.size and values.max() >= len(colours):
        raise MaskError(f"label {values.max()} has no colour in a {len(colours)}-entry palette")
    image = Image.fromarray(values, mode="P")
    image.putpalette(colours.astype(np.uint8).ravel().tolist())
    with atomic_file(path) as temporary:
        image.save(temporary, format="PNG")


def resize_labels(labels: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a label map (ids are never blended).

    Each output pixel takes the input pixel under its centre, so the result is symmetric and
    an integer up- then down-scale returns the original map.

    Args:
        labels: ``(H, W)`` label map (any integer dtype; ``uint8`` expected).
        size_hw: output ``(height, width)``, both positive.

    Returns:
        ``(height, width)`` array of the same dtype.
    """
    values = np.asarray(labels)
    if values.ndim != 2:
        raise MaskError(f"got labels of shape {values.shape}; expected an (H, W) label map")
    out_h, out_w = (int(v) for v in size_hw)
    if out_h <= 0 or out_w <= 0:
        raise MaskError(f"resize size {size_hw} must be two positive integers (height, width)")
    in_h, in_w = values.shape
    rows = ((2 * np.arange(out_h) + 1) * in_h) // (2 * out_h)
    cols = ((2 * np.arange(out_w) + 1) * in_w) // (2 * out_w)
    return values[rows[:, None], cols[None, :]]
