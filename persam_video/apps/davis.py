"""Run the tracker on every sequence of a DAVIS-layout dataset; resumable.

Results are written in the layout ``persam-video eval`` (and the official evaluation) reads:
``OUT/<seq>/<frame>.png``, palette PNGs of object ids named like the annotations. A sequence is
written into a hidden temporary folder and renamed into place only when every frame is done, so
``OUT/<seq>/`` exists only for complete sequences: after a crash or Ctrl-C, running the same
command again skips them and redoes the rest. ``OUT/run.json`` records the model and config; a
rerun with different settings into the same folder is refused rather than mixing results.

Every sequence's first annotation is checked before anything is written (see
:meth:`DavisDataset.reference`): a bad one, e.g. DAVIS 2016 annotations read under 2017 rules,
leaves ``OUT`` as it was (not even created).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persam_video.apps.run_record import check_run_record
from persam_video.atomic import atomic_folder, check_not_overwriting, run_folder
from persam_video.eval.davis_dataset import DavisDataset
from persam_video.io import open_source, write_label_png
from persam_video.io.streamed import StreamedFrames
from persam_video.progress import progress_bar
from persam_video.video import VideoTracker
from persam_video.video.engine import Engine, as_engine
from persam_video.video.state import FrameResult

RUN_RECORD = "run.json"
#: The command recorded as the owner of a DAVIS results folder.
DAVIS_COMMAND = "davis"


@dataclass
class DavisRun:
    """What :func:`run_davis` did."""

    out_dir: Path
    done: list[str]
    skipped: list[str]
    frames: int
    seconds: float


def run_davis(
    tracker: Engine | VideoTracker,
    dataset: DavisDataset,
    out_dir: str | Path,
    *,
    record: dict[str, Any] | None = None,
    progress: bool = True,
    on_sequence: Callable[[str], None] | None = None,
    on_result: Callable[[str, FrameResult], None] | None = None,
) -> DavisRun:
    """Track every sequence of ``dataset`` from its first annotation into ``out_dir``.

    Args:
        tracker: the engine (:class:`~persam_video.video.engine.Engine`), or a
            :class:`VideoTracker` (model and config) as the PerSAM engine.
        dataset: the DAVIS subset.
        out_dir: results folder (created if needed).
        record: what identifies the run (model, checkpoint hash); stored with the config in
            ``run.json`` and compared on resume.
        progress: progress bars over sequences and frames.
        on_sequence: called with each sequence name once it is complete (used by tests).
        on_result: called with the sequence name and each frame's result as it is tracked
            (e.g. to count the keyframes SAM ran on).

    Raises:
        ValueError: naming the sequence, for a first annotation that cannot be tracked (checked
            for every sequence before ``out_dir`` is touched) or a frame that cannot be.
    """
    dataset.check_references()
    engine = as_engine(tracker)
    out = Path(out_dir)
    claimed = [RUN_RECORD, *dataset.sequences]
    check_not_overwriting(dataset.sequence_folders(), [out / name for name in claimed])
    with run_folder(out, DAVIS_COMMAND, claimed) as claim:
        claim.record(pending=[RUN_RECORD])
        check_run_record(out / RUN_RECORD, {**(record or {}), "config": engine.record()["config"]})
        done, skipped, frames = [], [], 0
        start = time.perf_counter()
        sequences = progress_bar(dataset.sequences, desc="sequences", unit="seq", enabled=progress)
        for seq in sequences:
            names = [p.stem for p in dataset.frame_paths(seq)]
            final = out / seq
            if _complete(final, names):
                skipped.append(seq)
                continue
            sequences.set_postfix_str(seq)
            claim.record(pending=[seq])  # ours once it moves into place, even if we die then
            try:
                _track_sequence(engine, dataset, seq, final, names, progress, on_result)
            except ValueError as exc:
                message = str(exc)
                if message.startswith(f"{seq}:") or f"/{seq}/" in message:  # already named
                    raise
                raise ValueError(f"{seq}: {exc}") from exc
            finally:
                claim.record()
            frames += len(names)
            done.append(seq)
            if on_sequence is not None:
                on_sequence(seq)
        return DavisRun(out, done, skipped, frames, time.perf_counter() - start)


def _track_sequence(
    engine: Engine,
    dataset: DavisDataset,
    seq: str,
    final: Path,
    names: list[str],
    progress: bool,
    on_result: Callable[[str, FrameResult], None] | None = None,
) -> None:
    """Track one sequence into ``final`` (renamed into place once every frame is written)."""
    with atomic_folder(final) as tmp:
        source = open_source(dataset.frame_paths(seq)[0].parent)
        bar = progress_bar(total=len(names), desc=seq, unit="frame", enabled=progress, nested=True)
        with source, bar:
            session = engine.open_session(StreamedFrames(source))
            session.add_labels(0, dataset.reference(seq))
            for result in session.propagate("forward"):
                write_label_png(tmp / f"{names[result.index]}.png", result.labels)
                if on_result is not None:
                    on_result(seq, result)
                bar.update(1)


def _complete(folder: Path, names: list[str]) -> bool:
    return folder.is_dir() and all((folder / f"{n}.png").is_file() for n in names)
