"""DAVIS semi-supervised evaluation, numerically equal to the official davis2017-evaluation.

Typical use::

    dataset = DavisDataset("data/DAVIS", subset="val", year=2017)
    report = evaluate_davis(dataset, "outputs/davis_val")
    print(report.format_table())
    report.to_json("davis_val.json")

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
last ones may be absent. These raise an exception naming the sequence (and frame):

* a missing prediction file (``FileNotFoundError``; the official script prints a message and
  calls ``sys.exit``);
* a prediction holding an id above the sequence's K, 255 included (``ValueError``; the official
  script prints a message and calls ``sys.exit`` after reading the whole sequence);
* a prediction of another size than the annotation, or a colour PNG (``ValueError``; the official
  code fails on a numpy shape error);
* a sequence whose frames are not all annotated, or with fewer than 3 frames (``ValueError``;
  the official code fails with an unrelated error).

For DAVIS 2016 (``dataset.single_object``), every non-zero prediction pixel is the one object, as
the official single-object evaluation reads results.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from persam_video.eval.davis_dataset import DavisDataset, read_label_png
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
from persam_video.labels import BACKGROUND_ID, VOID_ID

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
        results_dir: folder holding ``<seq>/<frame>.png`` for every sequence of ``dataset``.
        progress: show a progress bar over the sequences.

    Returns:
        The report with the global and per-object tables.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results folder not found: {results_dir}")
    objects: list[ObjectScores] = []
    for seq in tqdm(dataset.sequences, desc="DAVIS eval", unit="seq", disable=not progress):
        n_frames = len(dataset.frame_paths(seq))
        names = dataset.frame_names(seq)
        if len(names) != n_frames:
            raise ValueError(
                f"{seq}: {n_frames} frames but {len(names)} annotations; evaluation needs every "
                "frame annotated"
            )
        if n_frames < MIN_SEQUENCE_FRAMES:
            raise ValueError(f"{seq}: evaluation needs at least {MIN_SEQUENCE_FRAMES} frames")
        gt = dataset.load_annotations(seq)
        ids = dataset.object_ids(seq)
        pred = _read_predictions(results_dir / seq, names, gt.shape, ids, dataset.single_object)
        scores = evaluate_sequence(gt, pred, ids)
        objects.extend(
            ObjectScores.from_frames(seq, object_id, scores.j[row], scores.f[row])
            for row, object_id in enumerate(scores.object_ids)
        )
    return DavisReport(tuple(objects), subset=dataset.subset, year=dataset.year)


def _read_predictions(
    seq_dir: Path,
    names: list[str],
    shape: tuple[int, ...],
    object_ids: list[int],
    single_object: bool,
) -> np.ndarray:
    """(T, H, W) uint8 predicted labels of the evaluated frames; frames 0 and T-1 stay 0."""
    labels = np.zeros(shape, dtype=np.uint8)
    max_id = max(object_ids, default=BACKGROUND_ID)
    for index in range(FIRST_EVALUATED_FRAME, len(names) - 1):
        path = seq_dir / f"{names[index]}{RESULT_SUFFIX}"
        where = f"{seq_dir.name}/{path.name}"
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
