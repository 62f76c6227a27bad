"""``persam-video batch``: every clip of a manifest, locally or on Ray; resumable."""

from __future__ import annotations

import sys

import click

from persam_video.cli import common
from persam_video.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_SOME_FAILED,
    config_options,
    friendly_errors,
    model_options,
    out_option,
    output_options,
    quiet_option,
    threads_option,
)


@click.command()
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=str))
@out_option("Output folder: one sub-folder per clip, failures.jsonl.", file_okay=False)
@common.ray_options
@common.resize_mask_option("masks")
@model_options(from_targets=False)
@config_options
@common.keyframes_option
@output_options
@quiet_option
@threads_option
@friendly_errors
def batch(
    manifest: str,
    out_dir: str,
    ray_address: str | None,
    workers: int,
    gpus_per_worker: float,
    resize_mask: bool,
    model_name: str | None,
    checkpoint: str | None,
    device: str,
    config_name: str,
    overrides: tuple[str, ...],
    finetune: bool,
    overlay: bool,
    masked_video: str,
    mask_format: str,
    report: bool,
    heatmap: bool,
    quiet: bool,
    threads: int,
) -> None:
    """Track every clip of MANIFEST (CSV or JSON lines: input, mask or target, name, overrides).

    Resumable: clips finished by an earlier run are skipped. A clip that fails is recorded in
    failures.jsonl and the others go on; the exit code is 1 when some failed.
    """
    from persam_video.atomic import check_out_dir
    from persam_video.batch.clip import BatchSettings, ClipStatus
    from persam_video.batch.manifest import ManifestError, read_manifest
    from persam_video.batch.ray_backend import import_ray
    from persam_video.batch.runner import run_batch

    model_name = common.model_for_targets(model_name, memory=True)
    config = common.build_config(config_name, overrides, finetune, model_name)
    try:
        jobs = read_manifest(manifest, config, resize_mask=resize_mask, out_dir=out_dir)
    except ManifestError as exc:
        for line in str(exc).splitlines():
            click.echo(f"error: {line}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    check_out_dir(out_dir)
    if ray_address is not None:
        import_ray()
    settings = BatchSettings(
        model=model_name,
        checkpoint=checkpoint,
        device=device,
        config=config.to_dict(),
        outputs={
            "overlay": overlay,
            "masked_video": masked_video,
            "mask_format": mask_format,
            "report": report,
            "heatmap": heatmap,
        },
        resize_mask=resize_mask,
    )
    common.say_model_warning(model_name)
    with common.ClipProgress(len(jobs), quiet, out_dir) as progress:
        outcomes = run_batch(
            jobs,
            out_dir,
            settings,
            ray_address=ray_address,
            workers=workers,
            gpus_per_worker=gpus_per_worker,
            on_outcome=progress,
        )
        progress.skipped(sum(o.status == ClipStatus.SKIPPED for o in outcomes))
    width = max(len(o.name) for o in outcomes)
    click.echo(f"\n{'clip':{width}}  {'status':8} {'frames':>7} {'seconds':>8}  reason")
    for o in outcomes:
        click.echo(
            f"{o.name:{width}}  {o.status:8} {o.frames:7d} {o.seconds:8.1f}  {o.reason or ''}"
        )
    failed = [o for o in outcomes if o.status == ClipStatus.FAILED]
    done = sum(o.status == ClipStatus.DONE for o in outcomes)
    skipped = sum(o.status == ClipStatus.SKIPPED for o in outcomes)
    click.echo(
        f"{done} done, {skipped} already done, {len(failed)} failed; "
        f"{progress.frames} frames in {progress.seconds:.1f} s; outputs in {out_dir}"
    )
    if failed:
        sys.exit(EXIT_SOME_FAILED)
