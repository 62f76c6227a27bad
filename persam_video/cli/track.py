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
    "mask_path",
    type=click.Path(path_type=str),
    help="First frame's mask: binary, palette PNG with ids 1..K, grayscale or colours.",
)
@click.option(
    "--target",
    "target_paths",
    multiple=True,
    type=click.Path(path_type=str),
    help="Instead of --mask: a .target file from 'persam-video personalize' "
    "(repeatable; object i gets id i).",
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
@click.option(
    "--resize-mask",
    is_flag=True,
    help="Resize a mask whose size differs from the frames (nearest neighbour).",
)
@speed_options
@click.option("--start", default=0, show_default=True, type=click.IntRange(min=0),
              help="First frame to track (0-based, decoding order); --mask annotates it. Outputs "
                   "begin there (without the audio).")  # fmt: skip
@click.option("--max-frames", type=click.IntRange(min=1),
              help="Track at most this many frames (for quick tries).")  # fmt: skip
@click.option(
    "--fps",
    help="Frame rate of a folder of frames, e.g. 24 or 30000/1001 "
    "(default 24; video files carry their own).",
)
@quiet_option
@threads_option
@friendly_errors
def track(
    input_path: str, mask_path: str | None, target_paths: tuple[str, ...], out_dir: str,
    model_name: str | None, checkpoint: str | None, device: str, config_name: str,
    overrides: tuple[str, ...], finetune: bool, overlay: bool, masked_video: str,
    save_masks: bool, draw_points: bool, resize_mask: bool, precision: str, batch_frames: int,
    compile_encoder: bool, stock_encoder: bool, start: int, max_frames: int | None,
    fps: str | None, quiet: bool, threads: int,
) -> None:  # fmt: skip
    """Segment and track the object(s) of the first frame's mask through INPUT.

    INPUT is a video file (mp4, mov, avi, mkv, webm, ...) or a folder of frames sorted by name.
    Writes masks/, overlay.mp4, optionally masked.mp4/.mov, and results.json to --out.
    With --target instead of --mask, saved targets are searched for in every frame.
    """
    from persam_video.apps.track import (
        OutputOptions,
        RunStatus,
        check_inputs_survive,
        check_mask_or_targets,
        check_out_dir,
        load_first_mask,
        track_to_folder,
    )
    from persam_video.io import open_source
    from persam_video.model.registry import model_metadata
    from persam_video.video import VideoTracker

    check_mask_or_targets(mask_path is not None, bool(target_paths))
    config = common.build_config(config_name, overrides, finetune)
    common.check_precision(precision, device)
    target_files = common.read_targets(target_paths)
    model_name = common.model_for_targets(model_name, target_files)
    options = OutputOptions(save_masks, overlay, masked_video, draw_points)
    check_inputs_survive(out_dir, options, [input_path, mask_path, *target_paths])
    with open_source(input_path, fps=fps) as frames:
        annotation = None
        if mask_path is not None:
            annotation = load_first_mask(mask_path, frames.size, resize=resize_mask)
        check_out_dir(out_dir)
        metadata = model_metadata(model_name, checkpoint)
        targets = common.load_targets(target_files, target_paths, metadata)
        sam = common.load_model(model_name, checkpoint, device, quiet)
        targets = common.targets_on(targets, sam.device) or None
        encoder = common.make_encoder(sam, precision, batch_frames, compile_encoder, stock_encoder)
        metadata["threads"] = threads
        tracker = VideoTracker(sam, config, encoder, progress=not quiet)
        summary = track_to_folder(
            tracker, frames, annotation, out_dir, targets=targets, options=options,
            progress=not quiet, metadata=metadata, start=start, max_frames=max_frames,
        )  # fmt: skip
    report_inputs(summary)
    line = (
        f"tracked {plural(len(summary.object_ids), 'object')} through "
        f"{plural(summary.frames, 'frame')} in {summary.seconds:.1f} s "
        f"({summary.frames_per_second:.2f} frames/s)"
    )
    if summary.status == RunStatus.COMPLETE:
        click.echo(f"{line}; outputs in {summary.out_dir}")
        return
    click.echo(f"{line}; partial results in {summary.out_dir}", err=True)
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
