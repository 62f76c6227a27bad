"""Annotation masks: reading, normalising, resizing and writing label maps.

A *label map* is a ``(H, W)`` ``uint8`` array: ``0`` is background, ``1..254`` are object ids
and ``255`` is DAVIS's "void" label (unannotated pixels, e.g. object borders). ``255`` is kept
where a file carries it, but it is never counted as an object (see :func:`object_ids`).

Rules for turning other mask encodings into label maps
------------------------------------------------------
In-memory arrays (:func:`to_label_map`):

* ``bool``: ``True`` is object ``1``.
* Integer arrays: let ``L`` be the sorted distinct *nonzero* values.

  - ``L == [1, 2, ..., K]`` (ids already consecutive from 1): kept as they are.
  - otherwise each value is renumbered by its rank: the smallest nonzero value becomes ``1``,
    the next ``2``, ... So ``{0, 1}``, ``{0, 255}`` and ``{0, v}`` all give one object ``1``;
    ``{0, 128, 255}`` gives objects ``1`` and ``2``; ``{0, 1, 3, 7}`` gives ``1, 2, 3, 4``.
    (Keep sparse ids by saving a palette PNG: :func:`read_mask` keeps palette indices.)

* Floating-point arrays: only binary masks, ``{0., 1.}`` or ``{0., 255.}``, giving object
  ``1``; soft masks and probability maps are refused.
* ``(H, W, 1)`` is squeezed to ``(H, W)``. Anything else (``(H, W, 3)`` colour arrays,
  other shapes, NaN, negative values, more than :data:`MAX_OBJECTS` objects) raises
  :class:`~persam_video.io.errors.MaskError` (a ``ValueError``).

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

from persam_video.io._atomic import partial_path, remove_quietly
from persam_video.io.errors import MaskError

BACKGROUND_ID = 0
VOID_ID = 255
MAX_OBJECTS = 254  # ids 1..254; 255 is reserved for "void"
PALETTE_SIZE = 256
BITS_PER_CHANNEL = 8
BINARY_FOREGROUND_VALUES = (1.0, 255.0)
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


def _rank_levels(values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Replace each value by its rank among ``levels`` (sorted nonzero values), 0 stays 0."""
    labels = np.zeros(values.shape, dtype=np.uint8)
    nonzero = values != 0
    labels[nonzero] = (np.searchsorted(levels, values[nonzero]) + 1).astype(np.uint8)
    return labels


def _integer_label_map(values: np.ndarray) -> np.ndarray:
    if values.size and values.min() < 0:
        raise MaskError(f"mask has negative values (min {values.min()}); expected ids >= 0")
    levels = np.unique(values)
    levels = levels[levels != 0]
    if len(levels) > MAX_OBJECTS:
        raise MaskError(
            f"mask has {len(levels)} distinct nonzero values; expected at most {MAX_OBJECTS} "
            "objects (is this a soft or anti-aliased mask?)"
        )
    if len(levels) and levels[-1] == len(levels):  # exactly 1..K
        return values.astype(np.uint8)
    return _rank_levels(values, levels)


def _float_label_map(values: np.ndarray) -> np.ndarray:
    if not np.isfinite(values).all():
        raise MaskError("float mask contains NaN or infinity; expected only 0 and 1 (or 0 and 255)")
    levels = np.unique(values)
    levels = levels[levels != 0]
    if len(levels) > 1 or (len(levels) == 1 and levels[0] not in BINARY_FOREGROUND_VALUES):
        shown = ", ".join(f"{v:g}" for v in levels[:4])
        raise MaskError(
            f"float mask has nonzero values {{{shown}{', ...' if len(levels) > 4 else ''}}}; "
            "expected a binary mask with only 0 and 1 (or 0 and 255)"
        )
    return (values != 0).astype(np.uint8)


def to_label_map(mask: np.ndarray) -> np.ndarray:
    """Convert an in-memory mask to a label map, following the rules in the module docstring.

    Args:
        mask: ``(H, W)`` or ``(H, W, 1)`` array of dtype bool, any integer type, or float.

    Returns:
        ``(H, W)`` ``uint8`` label map (a new array).

    Raises:
        MaskError: if the array's shape, dtype or values do not describe a mask.
    """
    values = np.asarray(mask)
    if values.ndim == 3 and values.shape[2] == 1:
        values = values[:, :, 0]
    if values.ndim == 3 and values.shape[2] in (3, 4):
        raise MaskError(
            f"got a colour array of shape {values.shape}; expected an (H, W) mask "
            "(colour mask images are handled by read_mask)"
        )
    if values.ndim != 2:
        raise MaskError(f"got an array of shape {values.shape}; expected an (H, W) mask")
    if values.dtype == np.bool_:
        return values.astype(np.uint8)
    if np.issubdtype(values.dtype, np.integer):
        return _integer_label_map(values)
    if np.issubdtype(values.dtype, np.floating):
        return _float_label_map(values)
    raise MaskError(f"got a mask of dtype {values.dtype}; expected bool, integer or float")


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
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
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
    path = Path(path)
    image = _open_image(path)
    if image.format in LOSSY_FORMATS:
        raise MaskError(
            f"{path}: JPEG masks are lossy (compression adds false colours at edges); "
            "save the mask as PNG"
        )
    mode = image.mode
    try:
        if mode == "P":
            return np.array(image, dtype=np.uint8)
        if mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "F"):
            return to_label_map(np.array(image))
        if mode == "LA":
            gray_alpha = np.array(image)
            return to_label_map(np.where(gray_alpha[..., 1] == 0, 0, gray_alpha[..., 0]))
        rgba = np.array(image.convert("RGBA"))
    except MaskError as error:
        raise MaskError(f"{path}: {error}") from None
    rgb = np.where(rgba[..., 3:] == 0, 0, rgba[..., :3]).astype(np.uint8)
    return _colour_label_map(rgb, path)


def _as_uint8_labels(labels: np.ndarray) -> np.ndarray:
    values = np.asarray(labels)
    if values.ndim != 2:
        raise MaskError(f"got labels of shape {values.shape}; expected an (H, W) label map")
    if not (np.issubdtype(values.dtype, np.integer) or values.dtype == np.bool_):
        raise MaskError(f"got labels of dtype {values.dtype}; expected an integer label map")
    if values.size and (values.min() < 0 or values.max() > VOID_ID):
        raise MaskError(
            f"labels range {values.min()}..{values.max()}; expected ids in 0..{VOID_ID}"
        )
    return values.astype(np.uint8)


def write_label_png(
    path: str | os.PathLike[str],
    labels: np.ndarray,
    palette: np.ndarray = DAVIS_PALETTE,
) -> None:
    """Write a label map as a palette PNG, atomically.

    The image is written to a hidden temporary file in the same folder and then moved into
    place with ``os.replace``, so ``path`` never holds a half-written PNG.

    Args:
        path: destination file; its folder must exist.
        labels: ``(H, W)`` integer array with ids in ``0..255``.
        palette: ``(N, 3)`` ``uint8`` colours, ``N <= 256``; row ``i`` colours id ``i``.
    """
    values = _as_uint8_labels(labels)
    colours = np.asarray(palette)
    if colours.ndim != 2 or colours.shape[1] != 3 or not 0 < len(colours) <= PALETTE_SIZE:
        raise MaskError(f"palette has shape {colours.shape}; expected (N, 3) with N <= 256")
    if values.size and values.max() >= len(colours):
        raise MaskError(f"label {values.max()} has no colour in a {len(colours)}-entry palette")
    final = Path(path)
    temporary = partial_path(final)
    image = Image.fromarray(values, mode="P")
    image.putpalette(colours.astype(np.uint8).ravel().tolist())
    try:
        image.save(temporary, format="PNG")
        os.replace(temporary, final)
    except BaseException:
        remove_quietly(temporary)
        raise


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


def object_ids(labels: np.ndarray) -> list[int]:
    """Sorted object ids present in ``labels``: nonzero values except void (255)."""
    present = np.unique(np.asarray(labels))
    return [int(v) for v in present if v not in (BACKGROUND_ID, VOID_ID)]
