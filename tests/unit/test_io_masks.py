"""Tests for persam_video.io.masks: palette, normalisation rules, files, resizing."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from persam_video.io import (
    DAVIS_PALETTE,
    MaskError,
    object_ids,
    read_mask,
    resize_labels,
    to_label_map,
    write_label_png,
)


def _blobs(ids: list[int], size_hw: tuple[int, int] = (20, 30)) -> np.ndarray:
    """Label map with one horizontal band per id, in the given order, on background 0."""
    labels = np.zeros(size_hw, dtype=np.uint8)
    for row, label in enumerate(ids):
        labels[2 + 3 * row : 4 + 3 * row, 5:25] = label
    return labels


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- palette ----------------------------------------------------------------------------


def test_davis_palette_follows_the_voc_bit_interleaving():
    assert DAVIS_PALETTE.shape == (256, 3) and DAVIS_PALETTE.dtype == np.uint8
    assert DAVIS_PALETTE[:9].tolist() == [
        [0, 0, 0],
        [128, 0, 0],
        [0, 128, 0],
        [128, 128, 0],
        [0, 0, 128],
        [128, 0, 128],
        [0, 128, 128],
        [128, 128, 128],
        [64, 0, 0],
    ]
    assert DAVIS_PALETTE[255].tolist() == [224, 224, 192]  # DAVIS void colour
    assert len({tuple(c) for c in DAVIS_PALETTE.tolist()}) == 256
    with pytest.raises(ValueError):
        DAVIS_PALETTE[1, 0] = 1


# -- to_label_map ---------------------------------------------------------------------


def test_bool_mask_is_object_one():
    mask = np.zeros((4, 5), dtype=bool)
    mask[1:3, 2:4] = True
    labels = to_label_map(mask)
    assert labels.dtype == np.uint8 and labels.shape == (4, 5)
    assert labels.sum() == 4 and set(np.unique(labels)) == {0, 1}


@pytest.mark.parametrize(
    ("dtype", "foreground"),
    [(np.uint8, 1), (np.uint8, 255), (np.int64, 1), (np.uint8, 17), (np.uint16, 65535)],
)
def test_binary_integer_masks_become_object_one(dtype, foreground):
    mask = np.zeros((6, 7), dtype=dtype)
    mask[2:4, 1:6] = foreground
    labels = to_label_map(mask)
    np.testing.assert_array_equal(labels, (mask != 0).astype(np.uint8))


def test_consecutive_indexed_map_keeps_ids():
    mask = _blobs([3, 1, 2]).astype(np.int32)
    labels = to_label_map(mask)
    np.testing.assert_array_equal(labels, mask)


def test_gappy_ids_are_renumbered_by_increasing_value():
    mask = _blobs([7, 1, 3])
    labels = to_label_map(mask)
    expected = _blobs([3, 1, 2])
    np.testing.assert_array_equal(labels, expected)


def test_gray_levels_are_numbered_in_increasing_order():
    mask = _blobs([255, 128])
    np.testing.assert_array_equal(to_label_map(mask), _blobs([2, 1]))


def test_hw1_is_squeezed():
    mask = _blobs([1, 2])[..., None]
    np.testing.assert_array_equal(to_label_map(mask), _blobs([1, 2]))


@pytest.mark.parametrize("foreground", [1.0, 255.0])
def test_binary_float_masks(foreground):
    mask = _blobs([1]).astype(np.float32) * foreground
    np.testing.assert_array_equal(to_label_map(mask), _blobs([1]))


def test_all_zero_mask_is_empty():
    labels = to_label_map(np.zeros((3, 3), dtype=np.uint8))
    assert labels.sum() == 0 and object_ids(labels) == []


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (np.full((4, 4), 0.5, dtype=np.float32), "binary mask"),
        (np.array([[0.0, 1.0], [2.0, 0.0]]), "binary mask"),
        (np.array([[0.0, np.nan], [1.0, 0.0]]), "NaN"),
        (np.array([[0, -1], [1, 0]]), "negative"),
        (np.zeros((4, 4, 3), dtype=np.uint8), "read_mask"),
        (np.zeros((2, 4, 4), dtype=np.uint8), "(H, W)"),
        (np.zeros(4, dtype=np.uint8), "(H, W)"),
        (np.arange(300, dtype=np.uint16).reshape(15, 20), "at most 254"),
        (np.array([["a"]]), "dtype"),
    ],
)
def test_invalid_arrays_raise_one_line_mask_errors(mask, message):
    with pytest.raises(MaskError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        to_label_map(mask)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


# -- files ------------------------------------------------------------------------------


def test_palette_png_round_trip_keeps_ids_and_void(tmp_path):
    labels = _blobs([1, 3, 7])
    labels[0, :] = 255  # void border, as in DAVIS
    path = tmp_path / "00000.png"
    write_label_png(path, labels)
    with Image.open(path) as image:
        assert image.mode == "P"
        assert image.getpalette()[3 * 7 : 3 * 8] == DAVIS_PALETTE[7].tolist()
    read = read_mask(path)
    np.testing.assert_array_equal(read, labels)
    assert object_ids(read) == [1, 3, 7]
    assert _files(tmp_path) == ["00000.png"]  # no temporary file left behind


def test_palette_png_with_foreign_palette_still_uses_indices(tmp_path):
    labels = _blobs([2, 5])
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[2], palette[5] = (255, 255, 255), (10, 10, 10)
    write_label_png(tmp_path / "m.png", labels, palette=palette)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), labels)


def test_grayscale_and_one_bit_pngs(tmp_path):
    binary = _blobs([1]).astype(bool)
    Image.fromarray(binary.astype(np.uint8) * 255, mode="L").save(tmp_path / "gray.png")
    Image.fromarray(binary).convert("1").save(tmp_path / "bit.png")
    Image.fromarray(_blobs([40, 80]), mode="L").save(tmp_path / "levels.png")
    Image.fromarray(binary.astype(np.uint16) * 65535).save(tmp_path / "deep.png")
    expected = binary.astype(np.uint8)
    np.testing.assert_array_equal(read_mask(tmp_path / "gray.png"), expected)
    np.testing.assert_array_equal(read_mask(tmp_path / "bit.png"), expected)
    np.testing.assert_array_equal(read_mask(tmp_path / "deep.png"), expected)
    np.testing.assert_array_equal(read_mask(tmp_path / "levels.png"), _blobs([1, 2]))


def test_gray_alpha_png_treats_transparent_pixels_as_background(tmp_path):
    gray = np.full((20, 30), 200, dtype=np.uint8)  # opaque-looking everywhere
    alpha = (_blobs([1]) * 255).astype(np.uint8)
    Image.fromarray(np.dstack([gray, alpha]), mode="LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "la.png"), _blobs([1]))


def test_rgb_mask_with_davis_colours_maps_to_palette_indices(tmp_path):
    labels = _blobs([3, 7, 1])
    Image.fromarray(DAVIS_PALETTE[labels]).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "rgb.png"), labels)


def test_rgb_mask_with_arbitrary_colours_numbers_by_first_appearance(tmp_path):
    colours = np.array([[0, 0, 0], [10, 200, 30], [255, 255, 255], [1, 2, 3]], dtype=np.uint8)
    # Bands from top: white, then (10,200,30), then (1,2,3) -> ids 1, 2, 3 in that order.
    rgb = colours[_blobs([2, 1, 3])]
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "rgb.png"), _blobs([1, 2, 3]))


def test_mixed_palette_and_foreign_colours_are_numbered_by_appearance(tmp_path):
    rgb = np.zeros((20, 30, 3), dtype=np.uint8)
    rgb[_blobs([1]) == 1] = DAVIS_PALETTE[5]
    rgb[_blobs([0, 1]) == 1] = (9, 9, 9)
    Image.fromarray(rgb).save(tmp_path / "mixed.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "mixed.png"), _blobs([1, 2]))


def test_rgba_mask_transparent_pixels_are_background(tmp_path):
    rgba = np.zeros((20, 30, 4), dtype=np.uint8)
    rgba[..., :3] = (255, 0, 255)  # colour everywhere, only visible where opaque
    rgba[..., 3] = _blobs([255])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "rgba.png"), _blobs([1]))


def test_too_many_colours_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "n.png")
    with pytest.raises(MaskError, match="distinct colours"):
        read_mask(tmp_path / "n.png")


def test_jpeg_masks_are_refused_with_png_advice(tmp_path):
    Image.fromarray(_blobs([255])).save(tmp_path / "mask.jpg")
    with pytest.raises(MaskError, match="save the mask as PNG") as info:
        read_mask(tmp_path / "mask.jpg")
    assert "mask.jpg" in str(info.value)


@pytest.mark.parametrize("name", ["missing.png", "notes.png", "folder"])
def test_unreadable_mask_files(tmp_path, name):
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "folder").mkdir()
    with pytest.raises(MaskError) as info:
        read_mask(tmp_path / name)
    message = str(info.value)
    assert name in message and "\n" not in message


def test_write_label_png_is_atomic_over_an_existing_file(tmp_path):
    path = tmp_path / "m.png"
    write_label_png(path, _blobs([1]))
    with pytest.raises(MaskError):
        write_label_png(path, np.full((4, 4), 300, dtype=np.int32))
    np.testing.assert_array_equal(read_mask(path), _blobs([1]))  # old file untouched
    write_label_png(path, _blobs([2]))
    np.testing.assert_array_equal(read_mask(path), _blobs([2]))
    assert _files(tmp_path) == ["m.png"]


def test_write_label_png_rejects_ids_beyond_the_palette(tmp_path):
    with pytest.raises(MaskError, match="no colour"):
        write_label_png(tmp_path / "m.png", _blobs([4]), palette=DAVIS_PALETTE[:3])
    assert _files(tmp_path) == []


# -- resize / ids -----------------------------------------------------------------------


def test_resize_labels_is_nearest_neighbour_and_invertible_for_integer_scales():
    labels = _blobs([1, 3, 7])
    big = resize_labels(labels, (60, 90))
    assert big.shape == (60, 90) and big.dtype == np.uint8
    assert set(np.unique(big)) == set(np.unique(labels))
    np.testing.assert_array_equal(big[::3, ::3], labels)
    np.testing.assert_array_equal(resize_labels(big, labels.shape), labels)


def test_resize_labels_downscale_keeps_only_existing_ids():
    labels = _blobs([2, 9])
    small = resize_labels(labels, (7, 11))
    assert small.shape == (7, 11)
    assert set(np.unique(small)) <= {0, 2, 9}


def test_resize_labels_rejects_bad_sizes():
    with pytest.raises(MaskError, match="positive"):
        resize_labels(_blobs([1]), (0, 5))


def test_object_ids_skips_background_and_void():
    labels = _blobs([5, 2, 255])
    assert object_ids(labels) == [2, 5]
