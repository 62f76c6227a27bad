"""``persam-video eval`` in its direct form (one sequence: --annotations and --results), `track`
output folders as results, and DAVIS 2016-style annotations given to ``davis`` and ``eval``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import persam_video.cli.common as cli_module
from persam_video.cli import cli
from persam_video.eval.evaluate import evaluate_folder
from persam_video.io import write_label_png
from persam_video.model import registry as models
from persam_video.model.spec import build_sam_from_spec, tiny_sam_spec
from tests.helpers import entries
from tests.video_factory import synthetic_frame, synthetic_labels

SEQ = "boxes"
N_FRAMES = 12
SIZE_HW = (64, 80)


@pytest.fixture
def fake_model(monkeypatch):
    """A tiny random-weight SAM instead of a download; ``loads`` counts the models loaded."""
    sam = build_sam_from_spec(tiny_sam_spec(), seed=0)
    loads = []

    def load_model(*args, **kwargs):
        loads.append(args)
        return sam

    monkeypatch.setattr(cli_module, "load_model", load_model)
    monkeypatch.setattr(models, "model_metadata", lambda name, checkpoint=None: {"model": name})
    return loads


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(arg) for arg in args])


def assert_one_line_error(result, *parts: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    for part in parts:
        assert part in result.output


def write_tree(
    root: Path,
    sequences: dict[str, np.ndarray],
    names: list[str],
    years: tuple[str, ...] = ("2017",),
    mode: str = "P",
) -> Path:
    """A DAVIS tree: frames drawn from the labels (boxes on a ramp), annotations as palette
    (``mode`` "P") or grayscale ("L") PNGs, named ``names``."""
    for seq, labels in sequences.items():
        frames = root / "JPEGImages" / "480p" / seq
        annotations = root / "Annotations" / "480p" / seq
        frames.mkdir(parents=True)
        annotations.mkdir(parents=True)
        for t, (frame, name) in enumerate(zip(labels, names, strict=True)):
            Image.fromarray(synthetic_frame(t, frame.shape)).save(frames / f"{name}.jpg")
            if mode == "L":
                Image.fromarray(frame, mode="L").save(annotations / f"{name}.png")
            else:
                write_label_png(annotations / f"{name}.png", frame)
    for year in years:
        (root / "ImageSets" / year).mkdir(parents=True)
        (root / "ImageSets" / year / "val.txt").write_text("".join(f"{s}\n" for s in sequences))
    return root


def boxes(n_frames: int = N_FRAMES) -> np.ndarray:
    return np.stack([synthetic_labels(t, SIZE_HW) for t in range(n_frames)])


def single_object(n_frames: int = 5) -> np.ndarray:
    """DAVIS 2016-style labels: the one object is 255."""
    return np.where(boxes(n_frames) == 1, 255, 0).astype(np.uint8)


def annotations_of(root: Path, seq: str = SEQ) -> Path:
    return root / "Annotations" / "480p" / seq


# ---------------------------------------------------------------------------------------------
# eval --annotations FOLDER --results FOLDER
# ---------------------------------------------------------------------------------------------


def test_direct_form_scores_own_ground_truth_perfect_and_worse_ones_less(tmp_path):
    root = write_tree(tmp_path / "DAVIS", {SEQ: boxes()}, [f"{t:05d}" for t in range(N_FRAMES)])
    annotations = annotations_of(root)
    result = invoke(
        "eval",
        "--annotations",
        annotations,
        "--results",
        annotations,
        "-q",
        "--json",
        tmp_path / "report.json",
        "--csv",
        tmp_path / "global.csv",
    )
    assert result.exit_code == 0, result.output
    assert f"DAVIS 2017 {SEQ}: 2 objects in 1 sequence" in result.output
    assert "J&F-Mean" in result.output and f"{SEQ}_2" in result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["global"]["J&F-Mean"] == 1.0
    assert (tmp_path / "global.csv").read_text().startswith("J&F-Mean,")
    assert (tmp_path / "global_per-object.csv").is_file()

    worse = boxes()
    worse[1::2] = np.roll(worse[1::2], 5, axis=2)  # every other frame shifted
    worse[6:][worse[6:] == 2] = 0  # object 2 lost halfway
    results = tmp_path / "worse"
    results.mkdir()
    for t, frame in enumerate(worse):
        write_label_png(results / f"{t:05d}.png", frame)
    result = invoke(
        "eval",
        "--annotations",
        annotations,
        "--results",
        results,
        "-q",
        "--json",
        tmp_path / "worse.json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "worse.json").read_text())["global"]["J&F-Mean"] < 0.9


def test_a_track_output_folder_is_evaluated_in_both_forms(tmp_path, fake_model):
    # Files named frame_1 ... frame_12: track reads them in natural order and writes
    # masks/00000.png ..., which eval pairs with the annotations by position.
    names = [f"frame_{t + 1}" for t in range(N_FRAMES)]
    root = write_tree(tmp_path / "DAVIS", {SEQ: boxes()}, names)
    out = tmp_path / "results" / SEQ
    first_mask = annotations_of(root) / "frame_1.png"
    tracked = invoke(
        "track",
        root / "JPEGImages" / "480p" / SEQ,
        "--mask",
        first_mask,
        "--out",
        out,
        "--no-overlay",
        "-q",
    )
    assert tracked.exit_code == 0, tracked.output
    assert (out / "results.json").is_file() and (out / "masks" / "00011.png").is_file()

    direct = invoke(
        "eval",
        "--annotations",
        annotations_of(root),
        "--results",
        out,
        "-q",
        "--json",
        tmp_path / "direct.json",
    )
    assert direct.exit_code == 0, direct.output
    masks_only = invoke(
        "eval",
        "--annotations",
        annotations_of(root),
        "--results",
        out / "masks",
        "-q",
        "--json",
        tmp_path / "masks.json",
    )
    assert masks_only.exit_code == 0, masks_only.output
    davis_form = invoke(
        "eval",
        "--davis-root",
        root,
        "--results",
        tmp_path / "results",
        "-q",
        "--json",
        tmp_path / "davis.json",
    )
    assert davis_form.exit_code == 0, davis_form.output
    assert "DAVIS 2017 val: 2 objects in 1 sequence" in davis_form.output

    expected = evaluate_folder(annotations_of(root), out / "masks", progress=False)
    for name in ("direct", "masks", "davis"):
        report = json.loads((tmp_path / f"{name}.json").read_text())
        assert report["global"] == pytest.approx(expected.global_metrics)
    # Frame 0 of the masks is the annotation itself: the pairing is right.
    first = Image.open(out / "masks" / "00000.png")
    np.testing.assert_array_equal(np.array(first), boxes()[0])


def test_count_mismatch_is_refused_with_one_line(tmp_path):
    names = [f"frame_{t + 1}" for t in range(N_FRAMES)]
    root = write_tree(tmp_path / "DAVIS", {SEQ: boxes()}, names)
    out = tmp_path / "tracked"
    (out / "masks").mkdir(parents=True)
    for t, frame in enumerate(boxes(N_FRAMES - 1)):  # one mask fewer than annotations
        write_label_png(out / "masks" / f"{t:05d}.png", frame)
    (out / "results.json").write_text("{}")
    result = invoke(
        "eval",
        "--annotations",
        annotations_of(root),
        "--results",
        out,
        "-q",
        "--json",
        tmp_path / "report.json",
    )
    assert_one_line_error(result, f"cannot pair {N_FRAMES - 1} result PNGs", f"{N_FRAMES} annot")
    assert not (tmp_path / "report.json").exists()
    shutil.copytree(out, tmp_path / "results" / SEQ)
    result = invoke("eval", "--davis-root", root, "--results", tmp_path / "results", "-q")
    assert_one_line_error(result, f"{SEQ}: cannot pair")


def test_exactly_one_of_davis_root_and_annotations(tmp_path):
    root = write_tree(tmp_path / "DAVIS", {SEQ: boxes(4)}, [f"{t:05d}" for t in range(4)])
    both = invoke(
        "eval",
        "--davis-root",
        root,
        "--annotations",
        annotations_of(root),
        "--results",
        annotations_of(root),
    )
    neither = invoke("eval", "--results", annotations_of(root))
    for result in (both, neither):
        assert_one_line_error(result, "exactly one of --davis-root", "--annotations")
    subset = invoke(
        "eval",
        "--annotations",
        annotations_of(root),
        "--results",
        annotations_of(root),
        "--subset",
        "train",
    )
    assert_one_line_error(subset, "--subset")


# ---------------------------------------------------------------------------------------------
# DAVIS 2016-style annotations ({0, 255}) under the default --year 2017
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["L", "P"])
def test_eval_says_to_use_year_2016(tmp_path, mode):
    names = [f"{t:05d}" for t in range(5)]
    root = write_tree(
        tmp_path / "DAVIS", {"blackswan": single_object()}, names, years=("2016", "2017"), mode=mode
    )
    annotations = annotations_of(root, "blackswan")
    results = tmp_path / "results"
    shutil.copytree(annotations.parent, results)
    report = tmp_path / "report.json"
    direct = ["--annotations", annotations, "--results", annotations]
    davis_form = ["--davis-root", root, "--results", results]
    for form in (direct, davis_form):
        result = invoke("eval", *form, "-q", "--json", report)
        assert_one_line_error(result, "blackswan", "DAVIS 2016 single-object", "--year 2016")
        assert not report.exists()
        result = invoke("eval", *form, "--year", "2016", "-q", "--json", report)
        assert result.exit_code == 0, result.output
        assert "DAVIS 2016" in result.output
        assert json.loads(report.read_text())["global"]["J&F-Mean"] == 1.0
        report.unlink()


def test_davis_says_to_use_year_2016_and_writes_nothing(tmp_path, fake_model):
    names = [f"{t:05d}" for t in range(5)]
    sequences = {SEQ: boxes(5), "blackswan": single_object()}
    root = write_tree(tmp_path / "DAVIS", sequences, names, years=("2016", "2017"), mode="L")
    out = tmp_path / "out"
    result = invoke("davis", "--davis-root", root, "--out", out, "-q")
    assert_one_line_error(result, "blackswan", "DAVIS 2016 single-object", "--year 2016")
    assert not out.exists()
    assert not fake_model  # refused before the model was loaded
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = invoke(
        "davis", "--davis-root", root, "--out", out, "-q", "--json", out / "report.json"
    )
    assert_one_line_error(result, "blackswan", "--year 2016")
    assert entries(out) == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"

    shutil.rmtree(out)
    result = invoke("davis", "--davis-root", root, "--out", out, "--year", "2016", "-q")
    assert result.exit_code == 0, result.output
    assert "2 sequences tracked" in result.output and "DAVIS 2016 val" in result.output
    assert entries(out) == sorted(["run.json", SEQ, "blackswan"])


def test_davis_names_the_sequence_of_an_empty_first_annotation(tmp_path, fake_model):
    empty = boxes(4)
    empty[0] = 0
    sequences = {SEQ: boxes(4), "ghost": empty}
    root = write_tree(tmp_path / "DAVIS", sequences, [f"{t:05d}" for t in range(4)])
    out = tmp_path / "out"
    result = invoke("davis", "--davis-root", root, "--out", out, "-q")
    assert_one_line_error(result, "ghost: first annotation 00000.png", "empty")
    assert not out.exists() and not fake_model
