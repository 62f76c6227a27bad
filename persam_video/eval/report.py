"""Statistics of per-frame DAVIS scores and the DAVIS report (global and per-object tables).

Statistics follow the official ``db_statistics`` of davis2017-evaluation:

* mean: the mean over the evaluated frames;
* recall: the fraction of frames scoring strictly above 0.5;
* decay: mean of the first quarter minus mean of the last quarter. The N values are cut into 4
  bins at start indices ``round(1 + i * (N - 1) / 4) - 1`` for i = 0..4 (halves rounded up);
  bin i spans indices ``start_i .. start_{i+1}`` inclusive, so neighbouring bins share a frame.
  The official code keeps these indices as uint8, so its decay breaks from N = 256 evaluated
  frames on (the last bin end wraps to 0 and the decay becomes NaN); here they are plain
  integers, so results agree for every N up to 255 (all of DAVIS, whose longest sequence has
  about 100 frames) and stay meaningful beyond.

The global table averages the per-object statistics over all objects of all sequences, and
J&F-Mean is (mean J-Mean + mean F-Mean) / 2, as ``evaluation_method.py`` reports it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from persam_video.atomic import write_text

__all__ = [
    "GLOBAL_COLUMNS",
    "PER_OBJECT_COLUMNS",
    "DavisReport",
    "FrameStatistics",
    "ObjectScores",
    "decay",
    "decay_bin_starts",
    "frame_statistics",
    "recall",
]

RECALL_THRESHOLD = 0.5
DECAY_BINS = 4
# Column names of the official CSV files (global_results-<set>.csv, per-sequence_results-<set>.csv).
GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
PER_OBJECT_COLUMNS = ("Sequence", "J-Mean", "F-Mean")
# Decimals written to the CSV files and printed tables, as the official float_format="%.3f".
TABLE_DECIMALS = 3
PER_OBJECT_CSV_SUFFIX = "_per-object"


def per_object_csv_path(global_path: str | Path) -> Path:
    """Where :meth:`DavisReport.to_csv` writes the per-object table by default:
    ``<global stem>_per-object<suffix>`` beside ``global_path``."""
    global_path = Path(global_path)
    return global_path.with_name(f"{global_path.stem}{PER_OBJECT_CSV_SUFFIX}{global_path.suffix}")


class FrameStatistics(NamedTuple):
    """Mean, recall and decay of one object's per-frame scores."""

    mean: float
    recall: float
    decay: float


def _check_values(values: np.ndarray | Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"per-frame scores must be a non-empty 1-D array, got shape {array.shape}")
    if np.isnan(array).any():
        raise ValueError("per-frame scores contain NaN")
    return array


def recall(values: np.ndarray | Sequence[float], threshold: float = RECALL_THRESHOLD) -> float:
    """Fraction of frames whose score is strictly above ``threshold``."""
    array = _check_values(values)
    return float(np.count_nonzero(array > threshold) / array.size)


def decay_bin_starts(n_values: int, n_bins: int = DECAY_BINS) -> list[int]:
    """Start indices of the decay bins plus the last index: ``n_bins + 1`` integers.

    Index i is ``round(1 + i * (n_values - 1) / n_bins) - 1`` with halves rounded up, computed
    exactly in integers.
    """
    if n_values < 1:
        raise ValueError(f"decay needs at least one value, got {n_values}")
    # round_half_up(1 + i*(n-1)/b) - 1 == floor((2*i*(n-1) + b) / (2*b)).
    return [(2 * i * (n_values - 1) + n_bins) // (2 * n_bins) for i in range(n_bins + 1)]


def decay(values: np.ndarray | Sequence[float], n_bins: int = DECAY_BINS) -> float:
    """Mean of the first bin minus mean of the last bin (bins share their edge frames)."""
    array = _check_values(values)
    starts = decay_bin_starts(array.size, n_bins)
    first = array[starts[0] : starts[1] + 1]
    last = array[starts[-2] : starts[-1] + 1]
    return float(np.mean(first) - np.mean(last))


def frame_statistics(values: np.ndarray | Sequence[float]) -> FrameStatistics:
    """Mean, recall and decay of (N,) per-frame scores."""
    array = _check_values(values)
    return FrameStatistics(float(np.mean(array)), recall(array), decay(array))


@dataclass(frozen=True)
class ObjectScores:
    """Scores of one object of one sequence.

    Attributes:
        sequence: sequence name.
        object_id: object id in the annotations.
        j_frames: (N,) region similarity of the evaluated frames (all but the first and last).
        f_frames: (N,) boundary measure of the same frames.
        j: statistics of ``j_frames``.
        f: statistics of ``f_frames``.
    """

    sequence: str
    object_id: int
    j_frames: np.ndarray
    f_frames: np.ndarray
    j: FrameStatistics
    f: FrameStatistics

    @classmethod
    def from_frames(
        cls, sequence: str, object_id: int, j_frames: np.ndarray, f_frames: np.ndarray
    ) -> ObjectScores:
        """Build the scores and their statistics from (N,) per-frame J and F."""
        j_frames = np.asarray(j_frames, dtype=np.float64)
        f_frames = np.asarray(f_frames, dtype=np.float64)
        if j_frames.shape != f_frames.shape:
            raise ValueError(f"J shape {j_frames.shape} does not match F shape {f_frames.shape}")
        return cls(
            sequence,
            int(object_id),
            j_frames,
            f_frames,
            frame_statistics(j_frames),
            frame_statistics(f_frames),
        )

    @property
    def name(self) -> str:
        """Row name of the official per-sequence table, e.g. "bike-packing_1"."""
        return f"{self.sequence}_{self.object_id}"


@dataclass(frozen=True)
class DavisReport:
    """DAVIS results: one :class:`ObjectScores` per evaluated object, in evaluation order.

    Attributes:
        objects: scores of every object of every sequence.
        subset: evaluated subset, e.g. "val".
        year: DAVIS year, 2017 or 2016.
    """

    objects: tuple[ObjectScores, ...]
    subset: str = "val"
    year: int = 2017

    def __post_init__(self) -> None:
        if not self.objects:
            raise ValueError("a DAVIS report needs at least one evaluated object")
        object.__setattr__(self, "objects", tuple(self.objects))

    @property
    def global_metrics(self) -> dict[str, float]:
        """The official global table: column name -> value, in :data:`GLOBAL_COLUMNS` order."""
        j_mean, j_recall, j_decay = (
            float(np.mean([obj.j[k] for obj in self.objects])) for k in range(3)
        )
        f_mean, f_recall, f_decay = (
            float(np.mean([obj.f[k] for obj in self.objects])) for k in range(3)
        )
        values = ((j_mean + f_mean) / 2, j_mean, j_recall, j_decay, f_mean, f_recall, f_decay)
        return dict(zip(GLOBAL_COLUMNS, values, strict=True))

    @property
    def jf_mean(self) -> float:
        """J&F-Mean, the headline DAVIS number."""
        return self.global_metrics["J&F-Mean"]

    @property
    def per_object_rows(self) -> list[tuple[str, float, float]]:
        """The official per-sequence table: (``<sequence>_<object id>``, J-Mean, F-Mean) rows."""
        return [(obj.name, obj.j.mean, obj.f.mean) for obj in self.objects]

    def to_dict(self) -> dict:
        """JSON-ready dict: global table, and per object its statistics and per-frame scores."""
        per_object = []
        for obj in self.objects:
            row: dict = {"name": obj.name, "sequence": obj.sequence, "object_id": obj.object_id}
            for prefix, stats in (("J", obj.j), ("F", obj.f)):
                row.update({f"{prefix}-{key.capitalize()}": stats[i] for i, key in _STAT_KEYS})
            row["J-frames"] = obj.j_frames.tolist()
            row["F-frames"] = obj.f_frames.tolist()
            per_object.append(row)
        return {
            "dataset": {"name": "DAVIS", "year": self.year, "subset": self.subset},
            "global": self.global_metrics,
            "per_object": per_object,
        }

    def to_json(self, path: str | Path) -> None:
        """Write :meth:`to_dict` as JSON (full precision)."""
        write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    def to_csv(self, global_path: str | Path, per_object_path: str | Path | None = None) -> Path:
        """Write the two official CSV tables with 3 decimals, as ``evaluation_method.py`` does.

        Args:
            global_path: file for the one-row global table (columns :data:`GLOBAL_COLUMNS`).
            per_object_path: file for the per-object table (columns :data:`PER_OBJECT_COLUMNS`);
                by default ``<global stem>_per-object<suffix>`` beside ``global_path``.

        Returns:
            The path the per-object table was written to.
        """
        global_path = Path(global_path)
        per_object_path = Path(per_object_path or per_object_csv_path(global_path))
        global_rows = [[_fmt(value) for value in self.global_metrics.values()]]
        per_object_rows = [[name, _fmt(j), _fmt(f)] for name, j, f in self.per_object_rows]
        write_text(global_path, _csv_text(GLOBAL_COLUMNS, global_rows))
        write_text(per_object_path, _csv_text(PER_OBJECT_COLUMNS, per_object_rows))
        return per_object_path

    def format_table(self) -> str:
        """Global and per-object tables as fixed-width text, 3 decimals."""
        n_sequences = len({obj.sequence for obj in self.objects})
        lines = [
            f"DAVIS {self.year} {self.subset}: {_plural(len(self.objects), 'object')} "
            f"in {_plural(n_sequences, 'sequence')}",
            *_text_table(GLOBAL_COLUMNS, [list(self.global_metrics.values())]),
            "",
            *_text_table(PER_OBJECT_COLUMNS, [list(row) for row in self.per_object_rows]),
        ]
        return "\n".join(lines)


_STAT_KEYS = tuple(enumerate(FrameStatistics._fields))


def _csv_text(header: Sequence[str], rows: list[list[str]]) -> str:
    """A CSV table as text (``\n`` line ends, as the official script writes them)."""
    handle = io.StringIO()
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return handle.getvalue()


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _fmt(value: float) -> str:
    return f"{value:.{TABLE_DECIMALS}f}"


def _text_table(header: Sequence[str], rows: list[list]) -> list[str]:
    """Right-aligned columns, except a left-aligned first column of names."""
    cells = [list(header)] + [
        [cell if isinstance(cell, str) else _fmt(cell) for cell in row] for row in rows
    ]
    widths = [max(len(row[col]) for row in cells) for col in range(len(header))]
    text_first = isinstance(rows[0][0], str) if rows else False
    lines = []
    for row in cells:
        parts = [
            cell.ljust(width) if col == 0 and text_first else cell.rjust(width)
            for col, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
    return lines
