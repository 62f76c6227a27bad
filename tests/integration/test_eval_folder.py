"""One sequence evaluated from two folders (``evaluate_folder``), ``track`` output folders as
results (both forms), and DAVIS 2016-style annotations read under 2017 rules."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from persam_video.apps import track as track_app
from persam_video.eval import evaluate as evaluate_module
from persam_video.eval.davis_dataset import DavisDataset
from persam_video.eval.evaluate import evaluate_davis, evaluate_folder
from persam_video.io import write_label_png
from persam_video.synthetic.clips import iter_clip
from persam_video.synthetic.export import write_davis
from tests.davis_layout import write_labels

SEED = 0


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A generated clip in DAVIS layout: (root, sequence name, (T, H, W) ground truth)."""
    root = tmp_path_factory.mktemp("davis")
    (seq,) = write_davis(root, [SEED])
    gt = np.stack([labels for _, labels in iter_clip(SEED, split="test")])
    assert len(np.unique(gt[0])) > 2  # several objects: the multi-object rules are exercised
    return root, seq, gt


def annotations_of(root: Path, seq: str) -> Path:
    return root / "Annotations" / "480p" / seq


def write_pngs(folder: Path, labels: np.ndarray, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for frame, name in zip(labels, names, strict=True):
        write_label_png(folder / f"{name}.png", frame)
    return folder


def track_style_output(folder: Path, labels: np.ndarray) -> Path:
    """What ``persam-video track`` leaves: masks/00000.png ... beside results.json."""
    write_pngs(folder / "masks", labels, [f"{i:05d}" for i in range(len(labels))])
    (folder / "results.json").write_text(json.dumps({"status": "complete"}))
    return folder


def shifted(gt: np.ndarray, pixels: int = 6) -> np.ndarray:
    return np.roll(gt, pixels, axis=2)


def emptied(gt: np.ndarray) -> np.ndarray:
    pred = gt.copy()
    half = len(pred) // 2
    pred[half:][pred[half:] == 1] = 0  # object 1 lost for the second half
    return pred


def test_clip_against_its_own_ground_truth_is_perfect(clip):
    root, seq, gt = clip
    report = evaluate_folder(annotations_of(root, seq), annotations_of(root, seq), progress=False)
    n_objects = int(gt[0][gt[0] != 255].max())
    assert [obj.name for obj in report.objects] == [f"{seq}_{i}" for i in range(1, n_objects + 1)]
    assert report.jf_mean == 1.0
    assert (report.year, report.subset) == (2017, seq)
    assert f"DAVIS 2017 {seq}: {n_objects} objects in 1 sequence\n" in report.format_table()


@pytest.mark.parametrize("damage", [shifted, emptied])
def test_worse_predictions_score_less_exactly_as_in_the_davis_form(clip, tmp_path, damage):
    root, seq, gt = clip
    names = [f"{i:05d}" for i in range(len(gt))]
    results = write_pngs(tmp_path / "results" / seq, damage(gt), names)
    report = evaluate_folder(annotations_of(root, seq), results, progress=False)
    assert report.jf_mean < 0.95
    davis_form = evaluate_davis(DavisDataset(root), tmp_path / "results", progress=False)
    assert report.global_metrics == davis_form.global_metrics
    assert report.per_object_rows == davis_form.per_object_rows


def test_track_output_folder_is_paired_by_position(clip, tmp_path):
    root, seq, gt = clip
    # Annotations named frame_1.png ... frame_T.png: natural order, not plain name order
    # (frame_10 comes after frame_9), pairs them with masks/00000.png ...
    annotations = write_pngs(tmp_path / seq, gt, [f"frame_{i + 1}" for i in range(len(gt))])
    out = track_style_output(tmp_path / "tracked", gt)
    for results in (out, out / "masks"):
        assert evaluate_folder(annotations, results, progress=False).jf_mean == 1.0
    damaged = track_style_output(tmp_path / "damaged", shifted(gt))
    expected = evaluate_folder(annotations_of(root, seq), damaged / "masks", progress=False)
    by_position = evaluate_folder(annotations, damaged, progress=False)
    assert by_position.per_object_rows == expected.per_object_rows


def test_names_that_match_pair_by_name_even_with_ends_missing(clip, tmp_path):
    root, seq, gt = clip
    names = [f"{i:05d}" for i in range(len(gt))]
    results = write_pngs(tmp_path / "results", gt[1:-1], names[1:-1])  # first and last absent
    assert evaluate_folder(annotations_of(root, seq), results, progress=False).jf_mean == 1.0


def test_counts_that_differ_are_refused(clip, tmp_path):
    _, seq, gt = clip
    annotations = write_pngs(tmp_path / seq, gt, [f"frame_{i + 1}" for i in range(len(gt))])
    out = track_style_output(tmp_path / "tracked", gt)
    (out / "masks" / "00005.png").unlink()
    with pytest.raises(
        ValueError,
        match=rf"{seq}: cannot pair {len(gt) - 1} result PNGs .* "
        rf"with {len(gt)} annotations",
    ):
        evaluate_folder(annotations, out, progress=False)


def test_folder_errors(clip, tmp_path):
    root, seq, gt = clip
    annotations = annotations_of(root, seq)
    with pytest.raises(FileNotFoundError, match="annotations folder not found"):
        evaluate_folder(tmp_path / "nope", annotations, progress=False)
    with pytest.raises(FileNotFoundError, match="results folder not found"):
        evaluate_folder(annotations, tmp_path / "nope", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no result PNGs in"):
        evaluate_folder(annotations, tmp_path / "empty", progress=False)
    with pytest.raises(FileNotFoundError, match="no annotation PNGs in"):
        evaluate_folder(tmp_path / "empty", annotations, progress=False)
    (tmp_path / "no-masks").mkdir()
    (tmp_path / "no-masks" / "results.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="track output folder without masks/"):
        evaluate_folder(annotations, tmp_path / "no-masks", progress=False)
    nothing = gt.copy()
    nothing[0] = 0
    empty_first = write_pngs(tmp_path / "blank", nothing, [f"{i:05d}" for i in range(len(gt))])
    with pytest.raises(ValueError, match="blank: the first annotation 00000.png holds no object"):
        evaluate_folder(empty_first, annotations, progress=False)


def test_davis_form_accepts_track_output_folders(clip, tmp_path):
    root, seq, gt = clip
    # A copy of the tree whose files are named bear_1 ... (not like the track masks).
    tree = tmp_path / "DAVIS"
    shutil.copytree(root, tree)
    for kind, suffix in (("JPEGImages", ".jpg"), ("Annotations", ".png")):
        folder = tree / kind / "480p" / seq
        for index, path in enumerate(sorted(folder.iterdir())):
            path.rename(folder / f"bear_{index + 1}{suffix}")
    dataset = DavisDataset(tree)
    track_style_output(tmp_path / "results" / seq, gt)
    assert evaluate_davis(dataset, tmp_path / "results", progress=False).jf_mean == 1.0
    # Without results.json the folder is a plain DAVIS result folder: names must match.
    plain = tmp_path / "plain" / seq
    shutil.copytree(tmp_path / "results" / seq / "masks", plain)
    with pytest.raises(FileNotFoundError, match=rf"{seq}/bear_2\.png: prediction not found"):
        evaluate_davis(dataset, tmp_path / "plain", progress=False)


def test_track_output_names_match_the_track_app():
    assert evaluate_module.TRACK_MASKS_DIR == track_app.MASKS_DIR
    assert evaluate_module.TRACK_RECORD == track_app.RESULTS_NAME


# ---------------------------------------------------------------------------------------------
# DAVIS 2016-style annotations ({0, 255}) under 2017 rules.
# ---------------------------------------------------------------------------------------------


def single_object_labels(n_frames: int = 5, size: tuple[int, int] = (24, 32)) -> np.ndarray:
    labels = np.zeros((n_frames, *size), dtype=np.uint8)
    for t in range(n_frames):
        labels[t, 6:16, 4 + t : 14 + t] = 255
    return labels


def write_2016_style(folder: Path, labels: np.ndarray, mode: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(labels):
        if mode == "L":
            Image.fromarray(frame, mode="L").save(folder / f"{t:05d}.png")
        else:
            write_labels(frame, folder / f"{t:05d}.png")
    return folder


@pytest.mark.parametrize("mode", ["L", "P"])
def test_2016_style_annotations_under_2017_say_to_use_2016(tmp_path, mode):
    labels = single_object_labels()
    annotations = write_2016_style(tmp_path / "blackswan", labels, mode)
    with pytest.raises(ValueError, match=r"^blackswan: .*DAVIS 2016 single-object .*--year 2016"):
        evaluate_folder(annotations, annotations, progress=False)
    report = evaluate_folder(annotations, annotations, single_object=True, progress=False)
    assert report.jf_mean == 1.0 and report.year == 2016
    assert [obj.name for obj in report.objects] == ["blackswan_1"]


def test_2016_style_annotations_in_a_davis_tree(tmp_path):
    labels = single_object_labels()
    root = tmp_path / "DAVIS"
    write_2016_style(root / "Annotations" / "480p" / "blackswan", labels, "L")
    frames = root / "JPEGImages" / "480p" / "blackswan"
    frames.mkdir(parents=True)
    for t in range(len(labels)):
        Image.new("RGB", labels.shape[:0:-1]).save(frames / f"{t:05d}.jpg")
    for year in ("2016", "2017"):
        (root / "ImageSets" / year).mkdir(parents=True)
        (root / "ImageSets" / year / "val.txt").write_text("blackswan\n")
    results = tmp_path / "results"
    shutil.copytree(root / "Annotations" / "480p", results)
    with pytest.raises(ValueError, match=r"^blackswan: .*--year 2016"):
        evaluate_davis(DavisDataset(root, year=2017), results, progress=False)
    assert evaluate_davis(DavisDataset(root, year=2016), results, progress=False).jf_mean == 1.0
