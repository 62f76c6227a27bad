"""DAVIS semi-supervised evaluation, numerically equal to the official davis2017-evaluation.

Typical use::

    dataset = DavisDataset("data/DAVIS", subset="val", year=2017)
    report = evaluate_davis(dataset, "outputs/davis_val")
    print(report.format_table())
    report.to_json("davis_val.json")

    # One sequence without a DAVIS tree: its annotation PNGs and a ``persam-video track`` output.
    report = evaluate_folder("bear/Annotations", "bear-tracked")

What is evaluated, as in the official semi-supervised evaluation:

* every frame except the first (the given reference) and the last;
* for a 2017 sequence, objects ``1..K`` with K the largest label of the first annotation
  (:meth:`DavisDataset.object_ids`); each object is scored on its own binary masks;
* void pixels (label 255) count as background: the official semi-supervised evaluation passes no
  void mask to the measures;
* an object absent from a predicted frame is an empty mask there (J = 0 unless the ground truth
  is empty too, then J = 1);
* the global table averages per-object statistics over all objects (see :mod:`eval_report`).

Prediction files: ``results_dir/<seq>/<frame>.png``, a palette (or grayscale) PNG of object ids
named like the annotation of that frame. Only the evaluated frames are read, so the first and
last ones may be absent. ``results_dir/<seq>/`` may also be a ``persam-video track`` output
folder (``masks/`` beside ``results.json``): its ``masks/00000.png ...`` are then read, by name
when every evaluated annotation has a mask of the same name, else by position (the i-th mask in
natural name order is frame i; this needs one mask per annotation). :func:`evaluate_folder`
evaluates one sequence given as two folders, pairing its files the same way.

These raise an exception naming the sequence (and frame):

* a missing prediction file (``FileNotFoundError``; the official script prints a message and
  calls ``sys.exit``);
* a prediction holding an id above the sequence's K, 255 included (``ValueError``; the official
  script prints a message and calls ``sys.exit`` after reading the whole sequence);
* a prediction of another size than the annotation, or a colour PNG (``ValueError``; the official
  code fails on a numpy shape error);
* a sequence whose frames are not all annotated, or with fewer than 3 frames (``ValueError``;
  the official code fails with an unrelated error);
* under 2017 rules, a first annotation holding only 0 and 255 (``ValueError`` saying to use
  year 2016): DAVIS 2017 reads that as background and void, so the sequence would have no
  object; it is what a DAVIS 2016 single-object annotation looks like;
* track output masks that pair with the annotations neither by name nor by position
  (``ValueError``).

For DAVIS 2016 (``dataset.single_object``), every non-zero prediction pixel is the one object, as
the official single-object evaluation reads results.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from persam_video.eval.davis_dataset import (
    MULTI_OBJECT_YEAR,
    SINGLE_OBJECT_YEAR,
    DavisDataset,
    check_first_annotation,
    first_frame_object_ids,
    read_annotations,
    read_label_png,
)
from persam_video.eval.metrics import (
    DEFAULT_BOUND_TH,
    boundary_map,
    boundary_measure,
    boundary_radius,
    disk_kernel,
    frame_scores,
    region_similarity,
)
from persam_video.eval.report import (
    GLOBAL_COLUMNS,
    PER_OBJECT_COLUMNS,
    DavisReport,
    FrameStatistics,
    ObjectScores,
    decay,
    decay_bin_starts,
    frame_statistics,
    recall,
)
from persam_video.io.reader import natural_key
from persam_video.labels import BACKGROUND_ID, VOID_ID
from persam_video.progress import progress_bar

__all__ = [
    "DEFAULT_BOUND_TH",
    "GLOBAL_COLUMNS",
    "PER_OBJECT_COLUMNS",
    "DavisReport",
    "FrameStatistics",
    "ObjectScores",
    "SequenceEvaluation",
    "boundary_map",
    "boundary_measure",
    "boundary_radius",
    "decay",
    "decay_bin_starts",
    "disk_kernel",
    "evaluate_davis",
    "evaluate_folder",
    "evaluate_sequence",
    "frame_scores",
    "frame_statistics",
    "recall",
    "region_similarity",
]

# The first frame is the given reference and the last one is left out, as in the official code.
FIRST_EVALUATED_FRAME = 1
MIN_SEQUENCE_FRAMES = 3
N_LABELS = 256
RESULT_SUFFIX = ".png"
#: A ``persam-video track`` output folder: ``masks/`` beside ``results.json`` (the names
#: ``persam_video.apps.track`` writes; ``apps`` is a layer above, so they are repeated here).
TRACK_MASKS_DIR = "masks"
TRACK_RECORD = "results.json"
#: The record of a track run that did not complete (its masks are ``masks.partial/``).
TRACK_PARTIAL_RECORD = "results.partial.json"


@dataclass(frozen=True)
class SequenceEvaluation:
    """Per-frame scores of the objects of one sequence.

    Attributes:
        object_ids: the K evaluated object ids, in order.
        j: (K, T - 2) region similarity of frames 1..T-2.
        f: (K, T - 2) boundary measure of frames 1..T-2.
    """

    object_ids: tuple[int, ...]
    j: np.ndarray
    f: np.ndarray


def evaluate_sequence(
    gt_labels: np.ndarray,
    pred_labels: np.ndarray,
    object_ids: Iterable[int],
    *,
    ignore_void: bool = False,
    bound_th: float = DEFAULT_BOUND_TH,
) -> SequenceEvaluation:
    """Score every object of one sequence on all frames but the first and last.

    Args:
        gt_labels: (T, H, W) integer labels: 0 background, object ids, 255 void.
        pred_labels: (T, H, W) integer labels: 0 background or one of ``object_ids``. Frames 0
            and T - 1 are not read.
        object_ids: ids to evaluate, each in 1..254.
        ignore_void: leave pixels labelled 255 in ``gt_labels`` out of J and F (as the official
            measures allow). The official semi-supervised evaluation does not: False keeps them
            as background.
        bound_th: boundary tolerance of F, see :func:`boundary_radius`.

    Returns:
        The per-frame J and F of every object.
    """
    gt_labels, pred_labels = np.asarray(gt_labels), np.asarray(pred_labels)
    ids = _check_object_ids(object_ids)
    if gt_labels.ndim != 3 or gt_labels.shape != pred_labels.shape:
        raise ValueError(
            f"labels must be two (T, H, W) arrays of one shape, got {gt_labels.shape} and "
            f"{pred_labels.shape}"
        )
    for labels in (gt_labels, pred_labels):
        if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
            raise ValueError(f"labels must be integer arrays, got dtype {labels.dtype}")
    if gt_labels.shape[0] < MIN_SEQUENCE_FRAMES:
        raise ValueError(
            f"a sequence needs at least {MIN_SEQUENCE_FRAMES} frames, got {len(gt_labels)}"
        )
    evaluated = slice(FIRST_EVALUATED_FRAME, -1)
    gt, pred = gt_labels[evaluated], pred_labels[evaluated]
    _check_prediction_ids(pred, ids)
    void = gt == VOID_ID if ignore_void else None
    j = np.empty((len(ids), len(gt)), dtype=np.float64)
    f = np.empty_like(j)
    for row, object_id in enumerate(ids):
        gt_mask, pred_mask = gt == object_id, pred == object_id
        j[row], f[row] = frame_scores(gt_mask, pred_mask, void, bound_th)
    return SequenceEvaluation(ids, j, f)


def evaluate_davis(
    dataset: DavisDataset, results_dir: str | Path, *, progress: bool = True
) -> DavisReport:
    """Evaluate predicted label PNGs against a DAVIS subset (see the module docstring).

    Args:
        dataset: the ground truth.
        results_dir: folder holding ``<seq>/<frame>.png`` for every sequence of ``dataset``
            (or ``<seq>/`` a ``persam-video track`` output folder, see the module docstring).
        progress: show a progress bar over the sequences.

    Returns:
        The report with the global and per-object tables.
    """
    results_dir = _check_folder(results_dir, "results")
    objects: list[ObjectScores] = []
    for seq in progress_bar(dataset.sequences, desc="DAVIS eval", unit="seq", enabled=progress):
        n_frames = len(dataset.frame_paths(seq))
        n_annotations = len(dataset.annotation_paths(seq))
        if n_annotations != n_frames:
            raise ValueError(
                f"{seq}: {n_frames} frames but {n_annotations} annotations; evaluation needs "
                "every frame annotated"
            )
        seq_dir, is_track_output = result_folder(results_dir / seq)
        objects.extend(
            _evaluate_files(
                seq,
                dataset.annotation_paths(seq),
                seq_dir,
                single_object=dataset.single_object,
                by_position=is_track_output,
            )
        )
    return DavisReport(tuple(objects), subset=dataset.subset, year=dataset.year)


def evaluate_folder(
    annotations_dir: str | Path,
    results_dir: str | Path,
    *,
    single_object: bool = False,
    progress: bool = True,
) -> DavisReport:
    """Evaluate one sequence given as a folder of annotations and a folder of results.

    The sequence is scored exactly as :func:`evaluate_davis` scores a sequence of a DAVIS tree
    (see the module docstring); it is named after ``annotations_dir``, and the report's subset
    is that name.

    Args:
        annotations_dir: the sequence's annotation PNGs (every frame), in natural name order
            (:func:`~persam_video.io.natural_key`, as ``track`` reads frames).
        results_dir: the predicted label PNGs, or a ``persam-video track`` output folder
            (``masks/`` beside ``results.json``), whose ``masks/`` is then read. Results pair
            with annotations by name when every evaluated annotation has a result of the same
            name, else by position (the i-th result in natural name order is frame i), which
            needs as many results as annotations.
        single_object: DAVIS 2016 rules (every non-zero label is object 1); else DAVIS 2017
            rules, objects ``1..K`` from the first annotation.
        progress: show a progress bar.

    Returns:
        The report, with the same tables as :func:`evaluate_davis`.
    """
    annotations_dir = _check_folder(annotations_dir, "annotations")
    annotation_paths = label_pngs(annotations_dir)
    if not annotation_paths:
        raise FileNotFoundError(f"no annotation PNGs in {annotations_dir}")
    result_dir, _ = result_folder(_check_folder(results_dir, "results"))
    if not label_pngs(result_dir):
        raise FileNotFoundError(f"no result PNGs in {result_dir}")
    seq = annotations_dir.resolve().name
    objects: list[ObjectScores] = []
    for name in progress_bar([seq], desc="DAVIS eval", unit="seq", enabled=progress):
        objects.extend(
            _evaluate_files(
                name,
                annotation_paths,
                result_dir,
                single_object=single_object,
                by_position=True,
                require_objects=True,
            )
        )
    year = SINGLE_OBJECT_YEAR if single_object else MULTI_OBJECT_YEAR
    return DavisReport(tuple(objects), subset=seq, year=year)


def evaluation_inputs(
    results_dir: str | Path,
    *,
    dataset: DavisDataset | None = None,
    annotations_dir: str | Path | None = None,
) -> list[Path]:
    """The folders an evaluation reads PNGs from (annotations and results), those that exist:
    what its reports must not overwrite or sit inside."""
    results_dir = Path(results_dir)
    if dataset is not None:
        pairs = [(dataset.annotations_dir / seq, results_dir / seq) for seq in dataset.sequences]
    else:
        pairs = [(Path(annotations_dir or results_dir), results_dir)]
    folders = []
    for truth, results in pairs:
        folders.append(truth)
        if results.is_dir():
            folders += [results, results / TRACK_MASKS_DIR]
    return [folder for folder in folders if folder.is_dir()]


def label_pngs(folder: Path) -> list[Path]:
    """The PNG files of ``folder`` in natural name order (hidden temporary files left out)."""
    paths = [p for p in folder.glob(f"*{RESULT_SUFFIX}") if not p.name.startswith(".")]
    return sorted((p for p in paths if p.is_file()), key=lambda p: natural_key(p.name))


def result_folder(folder: Path) -> tuple[Path, bool]:
    """The folder of result PNGs for ``folder`` and whether it is a track output folder.

    A ``persam-video track`` output folder (``results.json`` inside) gives its ``masks/``;
    any other folder is its own result folder.
    """
    if not (folder / TRACK_RECORD).is_file():
        if (folder / TRACK_PARTIAL_RECORD).is_file():
            raise FileNotFoundError(
                f"{folder} is a track output folder of a run that stopped early (no "
                f"{TRACK_RECORD}): track the clip again"
            )
        return folder, False
    masks = folder / TRACK_MASKS_DIR
    if not masks.is_dir():
        stopped = any(folder.glob(f"{TRACK_MASKS_DIR}.partial*"))
        why = "the run stopped early" if stopped else "it was tracked without masks"
        raise FileNotFoundError(
            f"{folder} is a track output folder without {TRACK_MASKS_DIR}/ ({why})"
        )
    return masks, True


def _check_folder(folder: str | Path, kind: str) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{kind} folder not found: {folder}")
    return folder


def _evaluate_files(
    seq: str,
    annotation_paths: list[Path],
    result_dir: Path,
    *,
    single_object: bool,
    by_position: bool,
    require_objects: bool = False,
) -> list[ObjectScores]:
    """Score the objects of one sequence: its annotation files against the results in
    ``result_dir`` (paired by name, or by position when ``by_position`` allows it). A first
    annotation without objects gives no scores, or an error with ``require_objects``."""
    if len(annotation_paths) < MIN_SEQUENCE_FRAMES:
        raise ValueError(f"{seq}: evaluation needs at least {MIN_SEQUENCE_FRAMES} frames")
    gt = read_annotations(annotation_paths, single_object=single_object, where=seq)
    # Under 2017 rules the first frame is read raw, so it can be checked as it is in the file.
    check_first_annotation(gt[0], seq, single_object=single_object)
    ids = first_frame_object_ids(gt[0])
    if require_objects and not ids:
        raise ValueError(
            f"{seq}: the first annotation {annotation_paths[0].name} holds no object; "
            "there is nothing to evaluate"
        )
    names = [path.stem for path in annotation_paths]
    paths = _result_paths(seq, result_dir, names, by_position=by_position)
    pred = _read_predictions(seq, paths, gt.shape, ids, single_object)
    scores = evaluate_sequence(gt, pred, ids)
    return [
        ObjectScores.from_frames(seq, object_id, scores.j[row], scores.f[row])
        for row, object_id in enumerate(scores.object_ids)
    ]


def _result_paths(seq: str, result_dir: Path, names: list[str], *, by_position: bool) -> list[Path]:
    """The result file of every frame: named like its annotation when every evaluated frame has
    one of that name (or ``by_position`` is False), else the i-th result PNG for frame i."""
    by_name = [result_dir / f"{name}{RESULT_SUFFIX}" for name in names]
    evaluated = by_name[FIRST_EVALUATED_FRAME:-1]
    missing = next((path.name for path in evaluated if not path.is_file()), None)
    if not by_position or missing is None:
        return by_name
    found = label_pngs(result_dir) if result_dir.is_dir() else []
    if len(found) != len(names):
        raise ValueError(
            f"{seq}: cannot pair {len(found)} result PNGs in {result_dir} with {len(names)} "
            f"annotations: the names differ (no {missing}) and pairing by position needs one "
            "result per annotation"
        )
    return found


def _read_predictions(
    seq: str,
    paths: list[Path],
    shape: tuple[int, ...],
    object_ids: list[int],
    single_object: bool,
) -> np.ndarray:
    """(T, H, W) uint8 predicted labels of the evaluated frames; frames 0 and T-1 stay 0."""
    labels = np.zeros(shape, dtype=np.uint8)
    max_id = max(object_ids, default=BACKGROUND_ID)
    for index in range(FIRST_EVALUATED_FRAME, len(paths) - 1):
        path = paths[index]
        where = f"{seq}/{path.name}"
        if not path.is_file():
            raise FileNotFoundError(f"{where}: prediction not found at {path}")
        frame = read_label_png(path)
        if frame.shape != shape[1:]:
            raise ValueError(f"{where}: prediction is {frame.shape}, annotation is {shape[1:]}")
        if single_object:
            frame = frame != BACKGROUND_ID
        elif frame.max() > max_id:
            raise ValueError(
                f"{where}: prediction holds object id {int(frame.max())} but the sequence has "
                f"{max_id} objects"
            )
        labels[index] = frame
    return labels


def _check_object_ids(object_ids: Iterable[int]) -> tuple[int, ...]:
    ids = tuple(int(object_id) for object_id in object_ids)
    if any(not BACKGROUND_ID < object_id < VOID_ID for object_id in ids):
        raise ValueError(f"object ids must be in 1..254, got {ids}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"object ids must be unique, got {ids}")
    return ids


def _check_prediction_ids(pred: np.ndarray, object_ids: tuple[int, ...]) -> None:
    """Raise if (N, H, W) predicted labels hold anything but background and ``object_ids``."""
    if pred.size and (pred.min() < 0 or pred.max() >= N_LABELS):
        raise ValueError(f"predicted labels must be in 0..255, got {pred.min()}..{pred.max()}")
    unexpected = np.ones(N_LABELS, dtype=np.uint8)
    unexpected[[BACKGROUND_ID, *object_ids]] = 0
    # A 256-entry lookup table through OpenCV: far faster than numpy indexing or bincount.
    pixels = np.ascontiguousarray(pred, dtype=np.uint8).reshape(-1, pred.shape[-1])
    if not cv2.LUT(pixels, unexpected).any():
        return
    for frame_index, frame in enumerate(pred):
        labels = np.unique(frame)
        bad = labels[unexpected[labels].astype(bool)]
        if bad.size:
            raise ValueError(
                f"prediction frame {frame_index + FIRST_EVALUATED_FRAME} holds label "
                f"{int(bad[0])}, not background or one of {object_ids}"
            )
