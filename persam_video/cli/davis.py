"""``persam-video davis`` and ``eval``: DAVIS-layout datasets, tracked and evaluated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from persam_video.cli import common
from persam_video.cli.common import (
    InputError,
    config_options,
    friendly_errors,
    model_options,
    out_option,
    quiet_option,
    speed_options,
    threads_option,
)

DEFAULT_SUBSET = "val"
#: DAVIS runs default to the largest official model (the paper's DAVIS setting).
DAVIS_DEFAULT_MODEL = "vit_h"


def davis_set_options(func: Any = None, *, required: bool = True) -> Any:
    """--davis-root, --subset, --year: which DAVIS subset (--davis-root optional unless
    ``required``)."""
    if func is None:
        return lambda f: davis_set_options(f, required=required)
    options = [
        click.option(
            "--davis-root",
            required=required,
            default=None,
            type=click.Path(file_okay=False, path_type=str),
            help="DAVIS folder (with ImageSets/, JPEGImages/, Annotations/).",
        ),
        click.option(
            "--subset",
            default=None,
            help=f"Image set (ImageSets/<year>/<subset>.txt). [default: {DEFAULT_SUBSET}]",
        ),
        click.option(
            "--year", type=click.Choice(["2016", "2017"]), default="2017", show_default=True
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _old_override(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> Any:
    if value:
        common.deprecated("--override KEY=VALUE", "--set KEY=VALUE")
    return value


def split_old_subset(subset: str | None, overrides: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """The subset and the config overrides, reading ``--set NAME`` (no ``=``) as the old
    spelling of ``--subset NAME``."""
    old = [value for value in overrides if "=" not in value]
    if old:
        common.deprecated("--set NAME for the DAVIS image set", "--subset NAME")
        if len(old) > 1 or (subset is not None and subset != old[0]):
            raise InputError(f"give one image set with --subset (got {', '.join(old)})")
        subset = old[0]
    return subset or DEFAULT_SUBSET, tuple(value for value in overrides if "=" in value)


def check_report_paths(
    inputs: list[Path], json_path: str | None, csv_path: str | None = None
) -> None:
    """Refuse report files that cannot be written, or would overwrite or sit inside one of
    the ``inputs`` (folders read), before any work."""
    from persam_video.atomic import check_not_overwriting, check_writable_file
    from persam_video.eval.report import per_object_csv_path

    written = [check_writable_file(path) for path in (json_path, csv_path) if path]
    if csv_path:  # the per-object table goes beside the global one
        written.append(per_object_csv_path(csv_path))
    check_not_overwriting(inputs, written)


def evaluate_and_report(
    davis_root: str | None,
    subset: str,
    year: str,
    results: str,
    json_path: str | None,
    csv_path: str | None,
    quiet: bool,
    annotations: str | None = None,
) -> None:
    """Evaluate results (a DAVIS set, or one sequence's --annotations folder), print the
    tables, write the JSON/CSV files asked for."""
    from persam_video.eval.davis_dataset import SINGLE_OBJECT_YEAR, DavisDataset
    from persam_video.eval.evaluate import evaluate_davis, evaluate_folder, evaluation_inputs

    if annotations is not None:
        check_report_paths(
            evaluation_inputs(results, annotations_dir=annotations), json_path, csv_path
        )
        single_object = int(year) == SINGLE_OBJECT_YEAR
        report = evaluate_folder(
            annotations, results, single_object=single_object, progress=not quiet
        )
    else:
        dataset = DavisDataset(davis_root, subset=subset, year=int(year))
        check_report_paths(evaluation_inputs(results, dataset=dataset), json_path, csv_path)
        report = evaluate_davis(dataset, results, progress=not quiet)
    click.echo(report.format_table())
    if json_path:
        report.to_json(json_path)
    if csv_path:
        report.to_csv(csv_path)


@click.command()
@davis_set_options
@out_option("Results folder: <sequence>/<frame>.png; rerun to resume.", file_okay=False)
@model_options(default=DAVIS_DEFAULT_MODEL, from_targets=False)
@config_options
@click.option("--override", "old_overrides", multiple=True, hidden=True, callback=_old_override)
@speed_options
@click.option("--no-eval", is_flag=True, help="Only write the results; do not evaluate them.")
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False),
    help="Write the evaluation report as JSON.",
)
@quiet_option
@threads_option
@friendly_errors
def davis(
    davis_root: str,
    subset: str | None,
    year: str,
    out_dir: str,
    model_name: str | None,
    checkpoint: str | None,
    device: str,
    config_name: str,
    overrides: tuple[str, ...],
    finetune: bool,
    old_overrides: tuple[str, ...],
    precision: str,
    batch_frames: int,
    compile_encoder: bool,
    stock_encoder: bool,
    no_eval: bool,
    json_path: str | None,
    quiet: bool,
    threads: int,
) -> None:
    """Track every sequence of a DAVIS set from its first annotation, then evaluate (J&F).

    Sequences already complete in --out are skipped, so an interrupted run resumes.
    """
    from persam_video.apps.davis import run_davis
    from persam_video.eval.davis_dataset import DavisDataset
    from persam_video.memory.models import is_memory_model

    subset, overrides = split_old_subset(subset, overrides)
    model_name = common.model_for_targets(model_name, default=DAVIS_DEFAULT_MODEL, memory=True)
    config = common.build_config(config_name, (*overrides, *old_overrides), finetune, model_name)
    if not is_memory_model(model_name):
        common.check_precision(precision, device)
    dataset = DavisDataset(davis_root, subset=subset, year=int(year))
    results = [Path(out_dir) / seq for seq in dataset.sequences]  # read back by the evaluation
    check_report_paths([*dataset.sequence_folders(), *results], json_path)  # before hours
    dataset.check_references()  # before the model loads (run_davis checks again)
    speed = (precision, batch_frames, compile_encoder, stock_encoder)
    engine, metadata, _ = common.load_engine(
        model_name, checkpoint, device, quiet, config, speed, [], ()
    )
    with common.resumable(f"the finished sequences are kept in {out_dir}"):
        run = run_davis(engine, dataset, out_dir, record=metadata, progress=not quiet)
    click.echo(
        f"{len(run.done)} sequences tracked ({run.frames} frames, {run.seconds:.1f} s), "
        f"{len(run.skipped)} already complete; results in {run.out_dir}"
    )
    if not no_eval:
        with common.resumable(f"every sequence is tracked in {out_dir}", "to evaluate them"):
            evaluate_and_report(davis_root, subset, year, out_dir, json_path, None, quiet)


@click.command("eval")
@davis_set_options(required=False)
@click.option(
    "--annotations",
    type=click.Path(file_okay=False, path_type=str),
    help="Instead of --davis-root: the annotation PNGs of one sequence (in natural name order).",
)
@click.option("--set", "old_subset", hidden=True, default=None)
@click.option(
    "--results",
    required=True,
    type=click.Path(file_okay=False, path_type=str),
    help="Result folder: <sequence>/<frame>.png palette PNGs of object ids (with "
    "--annotations: the PNGs of that sequence); a `track` output folder stands for its masks/.",
)
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False), help="Write the report as JSON."
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False),
    help="Write the global table as CSV (per-object table beside it, *_per-object.csv).",
)
@quiet_option
@friendly_errors
def eval_command(
    davis_root: str | None,
    subset: str | None,
    year: str,
    annotations: str | None,
    old_subset: str | None,
    results: str,
    json_path: str | None,
    csv_path: str | None,
    quiet: bool,
) -> None:
    """Evaluate DAVIS results (semi-supervised J&F), equal to the official davis2017-evaluation.

    Give a DAVIS set with --davis-root, or one sequence with --annotations FOLDER (its results
    pair with the annotations by name, else by position; multi-object unless --year 2016).
    """
    if (davis_root is None) == (annotations is None):
        raise InputError(
            "give exactly one of --davis-root (a DAVIS set) and --annotations "
            "(one sequence's annotation folder)"
        )
    if annotations is not None and (subset is not None or old_subset is not None):
        raise InputError(
            "--subset picks an image set of --davis-root; --annotations is one sequence"
        )
    subset, _ = split_old_subset(subset, (old_subset,) if old_subset else ())
    evaluate_and_report(
        davis_root, subset, year, results, json_path, csv_path, quiet, annotations=annotations
    )
