"""Label maps: the one home of the rules for object ids, masks and annotations.

A *label map* is an ``(H, W)`` ``uint8`` array: :data:`BACKGROUND_ID` (0) is background,
``1..MAX_OBJECTS`` are object ids and :data:`VOID_ID` (255) is DAVIS's "void" label (unannotated
pixels, e.g. object borders). Void is kept where a file carries it, but it is never an object.

Rules for turning in-memory masks into label maps
-------------------------------------------------
:func:`to_label_map` (the rule for the pixel values of grayscale mask *files*):

* ``bool``: ``True`` is object ``1``.
* Integer arrays: let ``L`` be the sorted distinct *nonzero* values.

  - ``L == [1, 2, ..., K]`` (ids already consecutive from 1): kept as they are.
  - otherwise each value is renumbered by its rank: the smallest nonzero value becomes ``1``,
    the next ``2``, ... So ``{0, 1}``, ``{0, 255}`` and ``{0, v}`` all give one object ``1``;
    ``{0, 128, 255}`` gives objects ``1`` and ``2``; ``{0, 1, 3, 7}`` gives ``1, 2, 3, 4``.

* Floating-point arrays: only binary masks, ``{0., 1.}`` or ``{0., 255.}``, giving object
  ``1``; soft masks and probability maps are refused.
* ``(H, W, 1)`` is squeezed to ``(H, W)``. Anything else (colour arrays, other shapes, NaN,
  negative values, more than :data:`MAX_OBJECTS` objects) raises :class:`MaskError`.

:func:`from_array` (arrays given to the Python API as an annotation): an integer array of ids
0..255 keeps its ids, except that a 0/255 array is one binary object; anything else goes
through :func:`to_label_map`.

:func:`binary_mask` (image mode's one-object masks): bool, or numbers 0/1 or 0/255.

:class:`LabelMap` is an annotation checked once (:meth:`LabelMap.check`): whoever receives one
does not check it again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BACKGROUND_ID = 0
VOID_ID = 255
#: Object ids are 1..MAX_OBJECTS; 255 is reserved for "void".
MAX_OBJECTS = 254
BINARY_FOREGROUND_VALUES = (1.0, 255.0)
_BINARY_LEVELS = ({0, 1}, {0, 255})


class MaskError(ValueError):
    """A mask file or array cannot be turned into a label map."""


def object_ids(labels: np.ndarray) -> list[int]:
    """Sorted object ids present in ``labels``: nonzero values except void (255)."""
    present = np.unique(np.asarray(labels))
    return [int(v) for v in present if v not in (BACKGROUND_ID, VOID_ID)]


def check_object_id(obj_id: int) -> int:
    """``obj_id`` if it can be an object id (1..254), else :class:`MaskError`."""
    if isinstance(obj_id, bool) or not isinstance(obj_id, (int, np.integer)):
        raise MaskError(f"object ids must be integers 1..{MAX_OBJECTS}, got {obj_id!r}")
    if not BACKGROUND_ID < int(obj_id) < VOID_ID:
        raise MaskError(f"object ids must be in 1..{MAX_OBJECTS}, got {obj_id}")
    return int(obj_id)


def describe_size(size_hw: tuple[int, int]) -> str:
    """``WxH`` of an (H, W) size, as messages show it."""
    return f"{size_hw[1]}x{size_hw[0]}"


# ----------------------------------------------------------------------------- arrays
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


def from_array(mask: np.ndarray) -> np.ndarray:
    """An annotation array given to the API as a label map (see the module docstring)."""
    if isinstance(mask, np.ndarray) and mask.ndim == 2 and _keeps_ids(mask):
        return mask.astype(np.uint8)
    return to_label_map(mask)


def _keeps_ids(mask: np.ndarray) -> bool:
    """An integer array of ids 0..255 that is not a 0/255 binary mask keeps its ids."""
    if mask.dtype == bool or not np.issubdtype(mask.dtype, np.integer) or mask.size == 0:
        return False
    if mask.min() < 0 or mask.max() > VOID_ID:
        return False
    return set(np.unique(mask).tolist()) != {BACKGROUND_ID, VOID_ID}


def as_uint8_labels(labels: np.ndarray) -> np.ndarray:
    """An integer (or bool) (H, W) array of ids 0..255 as uint8, else :class:`MaskError`."""
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


def binary_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Validate a one-object (H, W) mask of image size ``size``; return it as bool.

    Accepts bool, or numeric values {0, 1} or {0, 255}; an (H, W, 1) array is squeezed.
    """
    if not isinstance(mask, np.ndarray):
        raise MaskError(f"mask must be a numpy array (H, W), got {type(mask).__name__}")
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise MaskError(f"mask must have shape (H, W), got {mask.shape}")
    if tuple(mask.shape) != tuple(size):
        raise MaskError(f"mask has size {mask.shape} but the image has size {tuple(size)}")
    if mask.dtype == bool:
        return mask
    if not (np.issubdtype(mask.dtype, np.integer) or np.issubdtype(mask.dtype, np.floating)):
        raise MaskError(f"mask must be bool or numeric, got {mask.dtype}")
    levels = set(np.unique(mask).tolist())
    if not any(levels <= allowed for allowed in _BINARY_LEVELS):
        shown = sorted(levels)[:6]
        raise MaskError(
            f"mask must be binary (bool, 0/1 or 0/255), got values {shown}"
            f"{'...' if len(levels) > len(shown) else ''}; for a label map pass (labels == id)"
        )
    return mask > 0


# ----------------------------------------------------------------------------- annotations
@dataclass(frozen=True)
class MaskSources:
    """Where the object ids of a mask file came from."""

    #: ``palette`` (ids are the palette indices), ``gray`` (pixel values) or ``colour`` (RGB).
    kind: str
    #: (object id, its value or colour in the file), by id.
    ids: tuple[tuple[int, str], ...]

    @property
    def renumbered(self) -> bool:
        """Whether some id differs from the number the file gave it (colours always do)."""
        return self.kind == "colour" or any(str(i) != value for i, value in self.ids)

    def describe(self) -> str:
        """``(255, 0, 0) -> 1, (0, 255, 0) -> 2``: what became which id."""
        return ", ".join(f"{value} -> {obj_id}" for obj_id, value in self.ids)


#: A mask looks fragmented (anti-aliased, or resized with interpolation) when it has at least
#: this many objects and at least this share of them are tiny: under this share of the frame,
#: or under this many pixels.
FRAGMENTED_MIN_OBJECTS = 5
FRAGMENTED_TINY_SHARE = 0.5
TINY_OBJECT_FRAME_SHARE = 1e-4
TINY_OBJECT_PIXELS = 16


def fragmentation_warning(labels: np.ndarray) -> str | None:
    """A one-line warning when a label map looks anti-aliased or interpolated (many objects,
    most of them a few pixels), else None."""
    counts = np.bincount(np.asarray(labels, dtype=np.uint8).ravel(), minlength=VOID_ID + 1)
    areas = [int(counts[i]) for i in range(1, VOID_ID) if counts[i]]
    if len(areas) < FRAGMENTED_MIN_OBJECTS:
        return None
    tiny_limit = max(TINY_OBJECT_PIXELS, TINY_OBJECT_FRAME_SHARE * labels.size)
    tiny = sum(area < tiny_limit for area in areas)
    if tiny < FRAGMENTED_TINY_SHARE * len(areas):
        return None
    return (
        f"the mask has {len(areas)} objects, {tiny} of them under {round(tiny_limit)} pixels: it "
        "looks anti-aliased or resized with interpolation (soft edges became objects); save it "
        "with flat colours (no anti-aliasing, nearest-neighbour resizing), or pass the original "
        "with --resize-mask"
    )


@dataclass(frozen=True)
class LabelMap:
    """An annotation checked once: a read-only (H, W) uint8 label map and its object ids.

    Build it with :meth:`check`; code that receives a :class:`LabelMap` does not check again.
    """

    #: (H, W) uint8, read-only: 0 background, 1..254 object ids, 255 void.
    array: np.ndarray
    #: Sorted object ids (at least one).
    ids: tuple[int, ...]
    #: What each id was in the mask file it was read from, or None for an array.
    sources: MaskSources | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(H, W)."""
        return (int(self.array.shape[0]), int(self.array.shape[1]))

    @classmethod
    def check(cls, labels: np.ndarray | LabelMap, size: tuple[int, int] | None = None) -> LabelMap:
        """Validate an (H, W) label map of frame size ``size`` with 1..254 objects.

        A :class:`LabelMap` is returned as it is (after the size check).
        """
        if isinstance(labels, LabelMap):
            checked = labels
        else:
            if not isinstance(labels, np.ndarray) or labels.ndim != 2:
                shape = getattr(labels, "shape", type(labels).__name__)
                raise MaskError(f"the first-frame mask must be an (H, W) label map, got {shape}")
            if labels.dtype != bool and (
                not np.issubdtype(labels.dtype, np.integer)
                or labels.min() < 0
                or labels.max() > VOID_ID
            ):
                raise MaskError("the first-frame mask must hold integer object ids 0..254")
            array = labels.astype(np.uint8)
            array.setflags(write=False)
            ids = tuple(object_ids(array))
            if not ids:
                raise MaskError("the first-frame mask is empty: mark at least one object")
            checked = cls(array, ids)
        if size is not None and checked.size != tuple(size):
            raise MaskError(
                f"the mask is {describe_size(checked.size)} but the frames are "
                f"{describe_size((int(size[0]), int(size[1])))} (WxH); pass --resize-mask to "
                "resize it"
            )
        return checked

    def mask(self, obj_id: int) -> np.ndarray:
        """(H, W) bool mask of one object."""
        return self.array == obj_id

    def without_void(self) -> np.ndarray:
        """A writable (H, W) uint8 copy with void pixels as background."""
        return np.where(self.array == VOID_ID, BACKGROUND_ID, self.array).astype(np.uint8)
