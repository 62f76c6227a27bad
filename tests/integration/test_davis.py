"""Tests of the DAVIS layout reader on tiny layouts written to a temporary folder."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from persam_video.eval.davis_dataset import DavisDataset, read_label_png
from tests.davis_layout import write_davis, write_labels


def _labels(n_frames: int = 3, size: tuple[int, int] = (6, 8)) -> np.ndarray:
    labels = np.zeros((n_frames, *size), dtype=np.uint8)
    labels[:, 1:3, 1:3] = 1
    labels[:, 3:5, 4:7] = 3
    labels[:, 0, :] = 255
    return labels


@pytest.fixture
def davis_root(tmp_path):
    return write_davis(tmp_path / "DAVIS", {"dog": _labels(4), "cat": _labels(3, (5, 7))})


def test_sequences_frames_and_annotations(davis_root):
    dataset = DavisDataset(davis_root)
    assert dataset.sequences == ["dog", "cat"]
    assert len(dataset) == 2
    assert [p.name for p in dataset.frame_paths("dog")] == [f"{t:05d}.jpg" for t in range(4)]
    assert [p.name for p in dataset.annotation_paths("cat")] == [
        "00000.png",
        "00001.png",
        "00002.png",
    ]
    assert dataset.frame_names("cat") == ["00000", "00001", "00002"]
    assert not dataset.single_object


def test_load_annotations_keeps_ids_and_void(davis_root):
    dataset = DavisDataset(davis_root)
    labels = dataset.load_annotations("dog")
    assert labels.shape == (4, 6, 8)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, _labels(4))
    np.testing.assert_array_equal(dataset.first_annotation("cat"), _labels(3, (5, 7))[0])


def test_object_ids_run_up_to_the_largest_first_frame_label(davis_root):
    # First frame holds 1, 3 and void 255: the official evaluation scores objects 1, 2 and 3.
    assert DavisDataset(davis_root).object_ids("dog") == [1, 2, 3]


def test_object_ids_empty_when_first_frame_has_no_object(tmp_path):
    labels = _labels(3)
    labels[0] = 0
    labels[0, 0] = 255
    root = write_davis(tmp_path, {"empty": labels})
    assert DavisDataset(root).object_ids("empty") == []


def test_sequence_list_skips_blank_lines_and_repeats(davis_root):
    (davis_root / "ImageSets" / "2017" / "val.txt").write_text("cat\n\n  dog  \ncat\n")
    assert DavisDataset(davis_root).sequences == ["cat", "dog"]


def test_read_label_png_returns_palette_indices(tmp_path):
    labels = np.array([[0, 1, 2], [3, 255, 1]], dtype=np.uint8)
    write_labels(labels, tmp_path / "p.png")
    out = read_label_png(tmp_path / "p.png")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, labels)


def test_read_label_png_accepts_grayscale_and_bilevel(tmp_path):
    labels = np.array([[0, 7], [255, 1]], dtype=np.uint8)
    Image.fromarray(labels, mode="L").save(tmp_path / "l.png")
    np.testing.assert_array_equal(read_label_png(tmp_path / "l.png"), labels)
    Image.fromarray(labels > 0).save(tmp_path / "b.png")
    np.testing.assert_array_equal(read_label_png(tmp_path / "b.png"), labels > 0)


def test_read_label_png_rejects_colour_images(tmp_path):
    Image.new("RGB", (4, 3), (128, 0, 0)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="mode 'RGB'"):
        read_label_png(tmp_path / "rgb.png")


def test_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="DAVIS root not found"):
        DavisDataset(tmp_path / "nowhere")


def test_missing_sequence_list(davis_root):
    with pytest.raises(FileNotFoundError, match=r"ImageSets/2017/train\.txt"):
        DavisDataset(davis_root, subset="train")


def test_empty_sequence_list(davis_root):
    (davis_root / "ImageSets" / "2017" / "val.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="sequence list is empty"):
        DavisDataset(davis_root)


def test_listed_sequence_without_frames(davis_root):
    (davis_root / "ImageSets" / "2017" / "val.txt").write_text("dog\nghost\n")
    with pytest.raises(FileNotFoundError, match="'ghost' is listed but has no frames"):
        DavisDataset(davis_root)


def test_listed_sequence_without_annotations(davis_root):
    for path in (davis_root / "Annotations" / "480p" / "cat").iterdir():
        path.unlink()
    with pytest.raises(FileNotFoundError, match="'cat' is listed but has no annotations"):
        DavisDataset(davis_root)


def test_other_resolution_is_missing(davis_root):
    with pytest.raises(FileNotFoundError, match="has no frames"):
        DavisDataset(davis_root, resolution="Full-Resolution")


def test_bad_year_and_unknown_sequence(davis_root):
    with pytest.raises(ValueError, match="year must be one of"):
        DavisDataset(davis_root, year=2019)
    with pytest.raises(ValueError, match="unknown sequence 'bird'"):
        DavisDataset(davis_root).frame_paths("bird")


def test_annotation_size_mismatch(davis_root):
    write_labels(
        np.zeros((2, 2), np.uint8), davis_root / "Annotations" / "480p" / "dog" / "00002.png"
    )
    with pytest.raises(ValueError, match=r"dog: annotation 00002\.png is \(2, 2\)"):
        DavisDataset(davis_root).load_annotations("dog")


def test_year_2016_merges_all_non_zero_labels_into_object_1(tmp_path):
    root = write_davis(tmp_path, {"dog": _labels(3)}, year=2016)
    dataset = DavisDataset(root, year="2016")
    assert dataset.single_object
    labels = dataset.load_annotations("dog")
    np.testing.assert_array_equal(labels, (_labels(3) != 0).astype(np.uint8))
    assert dataset.object_ids("dog") == [1]
    # The 2017 list is not read for 2016.
    with pytest.raises(FileNotFoundError, match=r"ImageSets/2017/val\.txt"):
        DavisDataset(root, year=2017)


def test_year_2016_original_frame_list_layout(tmp_path):
    root = write_davis(tmp_path, {"bear": _labels(3), "boat": _labels(3)}, year=2016)
    (root / "ImageSets" / "2016" / "val.txt").unlink()
    lines = [
        f"/JPEGImages/480p/{seq}/{t:05d}.jpg /Annotations/480p/{seq}/{t:05d}.png"
        for seq in ("bear", "boat")
        for t in range(3)
    ]
    (root / "ImageSets" / "480p").mkdir()
    (root / "ImageSets" / "480p" / "val.txt").write_text("\n".join(lines) + "\n")
    assert DavisDataset(root, year=2016).sequences == ["bear", "boat"]
    with pytest.raises(FileNotFoundError, match="sequence list not found"):
        DavisDataset(root, year=2017)


def test_frames_and_annotations_in_natural_name_order(tmp_path):
    root = write_davis(tmp_path, {"dog": _labels(12)})
    for kind, suffix in (("JPEGImages", ".jpg"), ("Annotations", ".png")):
        folder = root / kind / "480p" / "dog"
        for t in range(12):
            (folder / f"{t:05d}{suffix}").rename(folder / f"{t + 1}{suffix}")
    dataset = DavisDataset(root)
    # The order `track` reads a folder of frames in: 2 before 10 (plain name order has 10 first).
    assert [p.stem for p in dataset.frame_paths("dog")] == [str(t) for t in range(1, 13)]
    assert dataset.frame_names("dog") == [str(t) for t in range(1, 13)]


def test_reference_is_the_checked_first_annotation(davis_root):
    reference = DavisDataset(davis_root).reference("dog")
    np.testing.assert_array_equal(reference.array, _labels(4)[0])
    assert reference.ids == (1, 3)
    DavisDataset(davis_root).check_references()


@pytest.mark.parametrize("mode", ["L", "P"])
def test_reference_of_2016_style_annotations_under_2017(tmp_path, mode):
    labels = np.where(_labels(3) == 1, 255, 0).astype(np.uint8)
    root = write_davis(tmp_path, {"dog": _labels(3), "blackswan": labels})
    if mode == "L":
        for t, frame in enumerate(labels):
            path = root / "Annotations" / "480p" / "blackswan" / f"{t:05d}.png"
            Image.fromarray(frame, mode="L").save(path)
    dataset = DavisDataset(root)
    with pytest.raises(ValueError, match=r"^blackswan: .*DAVIS 2016 single-object .*--year 2016$"):
        dataset.check_references()
    (root / "ImageSets" / "2016").mkdir()
    (root / "ImageSets" / "2016" / "val.txt").write_text("blackswan\n")
    single = DavisDataset(root, year=2016)
    single.check_references()
    assert single.reference("blackswan").ids == (1,)


def test_reference_errors_name_the_sequence(tmp_path):
    empty = _labels(3)
    empty[0] = 0
    root = write_davis(tmp_path, {"dog": _labels(3), "empty": empty})
    with pytest.raises(ValueError, match=r"^empty: first annotation 00000\.png: .* is empty"):
        DavisDataset(root).check_references()
    write_labels(_labels(3, (4, 4))[0], root / "Annotations" / "480p" / "empty" / "00000.png")
    with pytest.raises(
        ValueError,
        match=r"^empty: first annotation 00000\.png is 4x4 but the "
        r"frames are 8x6",
    ):
        DavisDataset(root).check_references()
