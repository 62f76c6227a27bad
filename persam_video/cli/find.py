"""``persam-video find``: search many clips for saved targets; resumable, locally or on Ray."""

from __future__ import annotations

import sys

import click

from persam_video.cli import common
from persam_video.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_SOME_FAILED,
    InputError,
    config_options,
    friendly_errors,
    model_options,
    out_option,
    plural,
    quiet_option,
    threads_option,
)
from persam_video.config import SpanRules


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option(
    "--target",
    "target_paths",
    multiple=True,
    required=True,
    type=click.Path(path_type=str),
    help="Target file from 'persam-video personalize' (repeatable); its file name "
    "(without .target) names it in the reports.",
)
@out_option(
    "Output folder: found.json, found.csv, found.html, one sub-folder per clip, failures.jsonl.",
    file_okay=False,
)
@common.ray_options
@click.option(
    "--save-masks",
    is_flag=True,
    help="Also write each clip's masks (masks/00000.png ...); a search writes none.",
)
@click.option(
    "--max-gap",
    default=SpanRules.max_gap,
    show_default=True,
    type=click.IntRange(min=0),
    help="Absent frames bridged inside a span (one bad frame does not split it).",
)
@click.option(
    "--min-frames",
    default=SpanRules.min_frames,
    show_default=True,
    type=click.IntRange(min=1),
    help="Present frames a span needs (a shorter blip is not a span).",
)
@click.option(
    "--fps",
    help="Frame rate of folders of frames, e.g. 24 or 30000/1001 "
    "(default 24; video files carry their own).",
)
@model_options
@config_options(finetune=False)
@quiet_option
@threads_option
@friendly_errors
def find(
    inputs: tuple[str, ...],
    target_paths: tuple[str, ...],
    out_dir: str,
    ray_address: str | None,
    workers: int,
    gpus_per_worker: float,
    save_masks: bool,
    max_gap: int,
    min_frames: int,
    fps: str | None,
    model_name: str | None,
    checkpoint: str | None,
    device: str,
    config_name: str,
    overrides: tuple[str, ...],
    finetune: bool,
    quiet: bool,
    threads: int,
) -> None:
    """Search INPUTS (video files, folders, manifests) for saved targets.

    A folder of image frames is one clip; any other folder holds clips (its video files and
    folders of frames). A manifest (CSV or JSON lines) lists clips: input, optional name and
    overrides. Per clip and target, the spans where the target is present and the best frame of
    each; the reports (found.json, found.csv, found.html) are sorted by clip.

    Resumable: clips finished by an earlier run are skipped. A clip that fails is recorded in
    failures.jsonl and the others go on; the exit code is 1 when some failed.
    """
    from persam_video.apps.engines import engine_metadata
    from persam_video.atomic import check_out_dir
    from persam_video.batch.clip import BatchSettings, ClipStatus
    from persam_video.batch.find import FindTask, clip_jobs, run_find, target_refs
    from persam_video.batch.manifest import ManifestError
    from persam_video.batch.ray_backend import import_ray
    from persam_video.io import parse_fps

    if finetune:
        raise InputError(
            "find uses the targets as saved: --finetune applies when personalizing "
            "(persam-video personalize --finetune), and its PerSAM-F weights travel in the target"
        )
    target_files = common.read_targets(target_paths)
    refs = target_refs(target_paths)
    model_name = common.model_for_targets(model_name, target_files, memory=True)
    config = common.build_config(config_name, overrides, model_name=model_name)
    common.load_targets(target_files, target_paths, engine_metadata(model_name, checkpoint))
    parse_fps(fps)
    try:
        jobs = clip_jobs(inputs, config, out_dir)
    except ManifestError as exc:
        for line in str(exc).splitlines():
            click.echo(f"error: {line}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    check_out_dir(out_dir)
    if ray_address is not None:
        import_ray()
    task = FindTask(refs, SpanRules(max_gap=max_gap, min_frames=min_frames), save_masks, fps)
    settings = BatchSettings(
        model=model_name, checkpoint=checkpoint, device=device, config=config.to_dict(), task=task
    )
    common.say_model_warning(model_name)
    with common.ClipProgress(len(jobs), quiet, out_dir) as progress:
        run = run_find(
            jobs,
            out_dir,
            settings,
            ray_address=ray_address,
            workers=workers,
            gpus_per_worker=gpus_per_worker,
            on_outcome=progress,
        )
        progress.skipped(sum(o.status == ClipStatus.SKIPPED for o in run.outcomes))
    spans = {clip["name"]: clip["targets"] for clip in (run.found or {}).get("clips", [])}
    width = max(len(o.name) for o in run.outcomes)
    click.echo(f"\n{'clip':{width}}  {'status':8} {'frames':>7} {'seconds':>8}  found / reason")
    for o in run.outcomes:
        found = ", ".join(
            f"{name}: {plural(len(s), 'span')}" for name, s in spans.get(o.name, {}).items() if s
        )
        note = o.reason or found or ("nothing" if o.name in spans else "")
        click.echo(f"{o.name:{width}}  {o.status:8} {o.frames:7d} {o.seconds:8.1f}  {note}")
    failed = sum(o.status == ClipStatus.FAILED for o in run.outcomes)
    done = sum(o.status == ClipStatus.DONE for o in run.outcomes)
    skipped = sum(o.status == ClipStatus.SKIPPED for o in run.outcomes)
    with_spans = sum(any(s for s in targets.values()) for targets in spans.values())
    click.echo(
        f"{done} done, {skipped} already done, {failed} failed; targets found in "
        f"{with_spans} of {len(spans)} clips; {progress.frames} frames in "
        f"{progress.seconds:.1f} s; found.html in {out_dir}"
    )
    if failed:
        sys.exit(EXIT_SOME_FAILED)
