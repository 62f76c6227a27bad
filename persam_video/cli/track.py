"""``persam-video track``: a video (or a folder of frames) into masks, videos and results.json."""

from __future__ import annotations

import sys
from typing import Any

import click

from persam_video.cli import common
from persam_video.cli.common import (
    EXIT_INTERRUPTED,
    InputError,
    config_options,
    friendly_errors,
    model_options,
    out_option,
    output_options,
    plural,
    quiet_option,
    speed_options,
    threads_option,
)


@click.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=str))
@click.option(
    "--mask",
    "mask_specs",
    multiple=True,
    metavar="PATH[@FRAME]",
    help="Mask of frame FRAME (default 0): binary, palette PNG with ids 1..K, grayscale or "
    "colours (repeatable, one per frame).",
)
@click.option(
    "--point",
    "point_specs",
    multiple=True,
    metavar="[ID=]X,Y[@FRAME]",
    help="A click on object ID (default 1) at pixel X,Y (origin top left) of frame "
    "FRAME (default 0); SAM makes the mask (repeatable).",
)
@click.option(
    "--neg-point",
    "neg_point_specs",
    multiple=True,
    metavar="[ID=]X,Y[@FRAME]",
    help="A negative click: not object ID (repeatable).",
)
@click.option(
    "--box",
    "box_specs",
    multiple=True,
    metavar="[ID=]X0,Y0,X1,Y1[@FRAME]",
    help="A box around object ID on frame FRAME, in pixels (repeatable).",
)
@click.option(
    "--direction",
    type=click.Choice(["both", "forward", "backward"]),
    default="both",
    show_default=True,
    help="Track each object from its first annotated frame to the end and back to "
    "frame 0 (both), or one way.",
)
@click.option(
    "--save-prompt-masks",
    is_flag=True,
    help="Write prompt_masks/NNNNN.png: the masks SAM made of the clicks and boxes "
    "(and the --mask files), per annotated frame.",
)
@click.option(
    "--target",
    "target_paths",
    multiple=True,
    type=click.Path(path_type=str),
    help="A .target file from 'persam-video personalize', searched in every frame "
    "(repeatable; object i gets id i; prompts may add other ids).",
)
@out_option("Output folder (created if needed).")
@model_options
@config_options
@output_options
@click.option(
    "--save-masks/--no-save-masks",
    default=True,
    show_default=True,
    help="Write masks/00000.png ... (palette PNGs, object ids kept).",
)
@click.option(
    "--points/--no-points",
    "draw_points",
    default=False,
    show_default=True,
    help="Draw the prompt points on the overlay.",
)
@common.resize_mask_option("a mask")
@speed_options
@click.option(
    "--start",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="First frame to track (0-based, decoding order); --mask annotates it. Outputs "
    "begin there (without the audio).",
)
@click.option(
    "--max-frames",
    type=click.IntRange(min=1),
    help="Track at most this many frames (for quick tries).",
)
@click.option(
    "--fps",
    help="Frame rate of a folder of frames, e.g. 24 or 30000/1001 "
    "(default 24; video files carry their own).",
)
@quiet_option
@threads_option
@friendly_errors
def track(
    input_path: str,
    mask_specs: tuple[str, ...],
    point_specs: tuple[str, ...],
    neg_point_specs: tuple[str, ...],
    box_specs: tuple[str, ...],
    direction: str,
    save_prompt_masks: bool,
    target_paths: tuple[str, ...],
    out_dir: str,
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
    save_masks: bool,
    draw_points: bool,
    resize_mask: bool,
    precision: str,
    batch_frames: int,
    compile_encoder: bool,
    stock_encoder: bool,
    start: int,
    max_frames: int | None,
    fps: str | None,
    quiet: bool,
    threads: int,
) -> None:
    """Segment and track objects through INPUT, from a click, a box or a mask on any frame.

    INPUT is a video file (mp4, mov, avi, mkv, webm, ...) or a folder of frames sorted by name.
    Writes masks/, overlay.mp4, optionally masked.mp4/.mov, report.html and results.json to
    --out.
    FRAME is the 0-based frame index in decoding order (an index, not a time). Each object is
    tracked back to frame 0 and on to the end from its first annotated frame; a later
    annotation corrects it from there. With --target, saved targets are searched for in every
    frame (target i is object i; prompts then use other ids); a memory tracker also tracks a
    target back from the frame where it is first found (--direction both).
    """
    from persam_video.apps.prompted import needs_prompt_path
    from persam_video.apps.track import (
        OutputOptions,
        RunStatus,
        check_inputs_survive,
        check_mask_or_targets,
        load_first_mask,
        track_to_folder,
    )
    from persam_video.atomic import check_out_dir
    from persam_video.cli.prompts import parse_prompts
    from persam_video.io import open_source
    from persam_video.memory.models import is_memory_model
    from persam_video.video.session import check_keyframes

    specs = parse_prompts(mask_specs, point_specs, neg_point_specs, box_specs)
    outputs = OutputOptions(
        save_masks,
        overlay,
        masked_video,
        draw_points,
        mask_format=mask_format,
        report=report,
        heatmap=heatmap,
    )
    target_files = common.read_targets(target_paths)
    model_name = common.model_for_targets(model_name, target_files, memory=True)
    config = common.build_config(config_name, overrides, finetune, model_name)
    memory = is_memory_model(model_name)
    speed = (precision, batch_frames, compile_encoder, stock_encoder)
    # a memory tracker tracks a target both ways from the frame where it is found
    targets_both_ways = memory and bool(target_paths) and direction == "both"
    if (target_paths and specs) or targets_both_ways or needs_prompt_path(specs, direction):
        if not memory:
            check_keyframes(config, [s.frame for s in specs], direction, targets=bool(target_paths))
        if (start or max_frames is not None) and targets_both_ways and not specs:
            raise InputError(
                "--start and --max-frames track forward only: with a memory tracker, --target "
                "is tracked both ways from where it is found; add --direction forward"
            )
        if start or max_frames is not None:
            raise InputError(
                "--start and --max-frames work with a first-frame --mask only, not with "
                "prompts on other frames, --point, --box or --direction backward"
            )
        track_prompted(
            input_path,
            specs,
            target_paths,
            out_dir,
            target_files=target_files,
            direction=direction,
            save_prompt_masks=save_prompt_masks,
            model_name=model_name,
            checkpoint=checkpoint,
            device=device,
            config=config,
            options=outputs,
            resize_mask=resize_mask,
            speed=speed,
            fps=fps,
            quiet=quiet,
            threads=threads,
        )
        return
    if save_prompt_masks:
        raise InputError("--save-prompt-masks needs --point, --box or --mask PATH@FRAME prompts")
    mask_path = specs[0].path if specs else None
    check_mask_or_targets(mask_path is not None, bool(target_paths))
    if not memory:
        common.check_precision(precision, device)
    check_inputs_survive(out_dir, [input_path, mask_path, *target_paths])
    with open_source(input_path, fps=fps) as frames:
        annotation = None
        if mask_path is not None:
            annotation = load_first_mask(mask_path, frames.size, resize=resize_mask)
        check_out_dir(out_dir)
        engine, metadata, targets = common.load_engine(
            model_name, checkpoint, device, quiet, config, speed, target_files, target_paths
        )
        summary = track_to_folder(
            engine,
            frames,
            annotation,
            out_dir,
            targets=targets or None,
            options=outputs,
            progress=not quiet,
            metadata={**metadata, "threads": threads},
            start=start,
            max_frames=max_frames,
        )
    report_inputs(summary)
    line = (
        f"tracked {plural(len(summary.object_ids), 'object')} through "
        f"{plural(summary.frames, 'frame')} in {summary.seconds:.1f} s "
        f"({summary.frames_per_second:.2f} frames/s)"
    )
    if summary.status == RunStatus.COMPLETE:
        click.echo(f"{line}; outputs in {summary.out_dir}")
        return
    click.echo(f"{line}; partial results in {summary.out_dir} ({PARTIAL_NOTE})", err=True)
    if summary.status == RunStatus.INTERRUPTED:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    raise InputError(summary.error or "tracking stopped early")


#: What the line of a run that did not complete says of its outputs.
PARTIAL_NOTE = ".partial names, beside any earlier complete run, which is kept"


def track_prompted(
    input_path: str,
    specs: list[Any],
    target_paths: tuple[str, ...],
    out_dir: str,
    *,
    target_files: list[Any],
    direction: str,
    save_prompt_masks: bool,
    model_name: str,
    checkpoint: str | None,
    device: str,
    config: Any,
    options: Any,
    resize_mask: bool,
    speed: tuple[Any, ...],
    fps: str | None,
    quiet: bool,
    threads: int,
) -> None:
    """``track`` from prompts on any frames (see :mod:`persam_video.apps.prompted`)."""
    from persam_video.apps.prompted import check_geometry, check_specs, track_prompts_to_folder
    from persam_video.apps.track import RunStatus, check_inputs_survive
    from persam_video.atomic import check_out_dir
    from persam_video.io.seekable import open_seekable

    check_specs(specs)
    mask_files = [s.path for s in specs if s.path is not None]
    check_inputs_survive(out_dir, [input_path, *mask_files, *target_paths])
    target_ids = list(range(1, len(target_paths) + 1))
    with open_seekable(input_path, fps=fps) as frames:
        check_geometry(specs, frames.size, frames.num_frames, target_ids)
    check_out_dir(out_dir)
    engine, metadata, targets = common.load_engine(
        model_name, checkpoint, device, quiet, config, speed, target_files, target_paths
    )
    metadata["threads"] = threads
    if direction == "backward" and all(s.frame == 0 for s in specs):
        click.echo("note: every annotation is on frame 0: nothing to track backward", err=True)
    summary = track_prompts_to_folder(
        engine,
        input_path,
        specs,
        out_dir,
        direction=direction,  # type: ignore[arg-type]
        targets=list(zip(target_ids, targets, strict=True)),
        options=options,
        resize_mask=resize_mask,
        fps=fps,
        progress=not quiet,
        metadata=metadata,
        save_prompt_masks=save_prompt_masks,
    )
    report_inputs(summary)
    line = (
        f"tracked {plural(len(summary.object_ids), 'object')} through "
        f"{plural(summary.frames, 'frame')} ({direction}) in {summary.seconds:.1f} s"
    )
    if summary.status == RunStatus.COMPLETE:
        click.echo(f"{line}; outputs in {summary.out_dir}")
        return
    click.echo(f"{line}; partial results in {summary.out_dir} ({PARTIAL_NOTE})", err=True)
    if summary.status == RunStatus.INTERRUPTED:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    raise InputError(summary.error or "tracking stopped early")


def report_inputs(summary: Any) -> None:
    """Say how the mask's colours or values became ids, warn about suspicious inputs, and give
    the PerSAM-F weights learned."""
    sources = summary.annotation.sources if summary.annotation is not None else None
    if sources is not None and sources.renumbered:
        what = {"colour": "colours", "gray": "values"}.get(sources.kind, sources.kind)
        click.echo(f"mask {what} -> object ids: {sources.describe()}")
    for warning in summary.warnings:
        click.echo(f"warning: {warning}", err=True)
    for obj_id, info in sorted(summary.finetune.items()):
        weights = ", ".join(f"{w:.3f}" for w in info["weights"])
        click.echo(
            f"PerSAM-F object {obj_id}: weights {weights} ({info['steps']} steps in "
            f"{info['seconds']:.1f} s, {info['steps_per_second']:.0f} steps/s)"
        )
