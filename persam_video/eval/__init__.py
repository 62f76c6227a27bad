"""Evaluation: DAVIS datasets, J and F measures, statistics and reports (equal to the official
davis2017-evaluation).

- :mod:`~persam_video.eval.davis_dataset`: the DAVIS folder layout (2016 and 2017);
- :mod:`~persam_video.eval.metrics`: J (region similarity) and F (boundary measure);
- :mod:`~persam_video.eval.report`: recall, decay, per-object and global tables, JSON/CSV;
- :mod:`~persam_video.eval.evaluate`: :func:`evaluate_sequence`, :func:`evaluate_davis`.
"""

from persam_video.eval.davis_dataset import DavisDataset
from persam_video.eval.evaluate import evaluate_davis, evaluate_sequence
from persam_video.eval.report import DavisReport

__all__ = ["DavisDataset", "DavisReport", "evaluate_davis", "evaluate_sequence"]
