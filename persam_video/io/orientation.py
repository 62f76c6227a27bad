"""One orientation convention: everything is in *display* orientation, as viewers show it.

- Video files: a display matrix (portrait phone videos store landscape frames with a quarter
  turn) turns the decoded frames (:func:`display_turns`, applied in
  :mod:`persam_video.io._video_decode`); sizes are reported turned (:mod:`~.probe`).
- Images (frames of a folder, photos, masks): the EXIF ``Orientation`` tag is applied
  (:func:`upright`), as photo viewers and browsers do.

So a mask drawn on a frame as a player or an image viewer shows it lines up with the frame,
and every output (masks, overlay and masked videos) is written upright, without a matrix or
tag.
"""

from __future__ import annotations

from PIL import Image, ImageOps

#: A quarter turn and a full turn, in degrees.
QUARTER_TURN = 90
FULL_TURN = 360
#: The EXIF ``Orientation`` tag, and its values that swap width and height (transpose,
#: 90 degrees clockwise, transverse, 90 degrees counter-clockwise).
EXIF_ORIENTATION = 0x0112
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_UPRIGHT = 1


def display_turns(rotation: float) -> int:
    """Quarter turns counter-clockwise (``np.rot90``'s ``k``, 0..3) of a display rotation in
    degrees (PyAV's ``VideoFrame.rotation``: 90, -90, -180, ...), rounded to the nearest."""
    return round(rotation / QUARTER_TURN) % (FULL_TURN // QUARTER_TURN)


def upright(image: Image.Image) -> Image.Image:
    """``image`` turned/mirrored as its EXIF orientation says; the same object (its ``format``
    kept) when it has none."""
    if _orientation(image) in (None, _UPRIGHT):
        return image
    return ImageOps.exif_transpose(image) or image


def _orientation(image: Image.Image) -> int | None:
    try:
        return image.getexif().get(EXIF_ORIENTATION)
    except (OSError, ValueError, SyntaxError):  # damaged EXIF: read as stored
        return None


def upright_size_hw(image: Image.Image) -> tuple[int, int]:
    """``(height, width)`` of ``image`` once :func:`upright`, without decoding its pixels."""
    width, height = image.size
    if _orientation(image) in _SWAPPING_ORIENTATIONS:
        return width, height
    return height, width
