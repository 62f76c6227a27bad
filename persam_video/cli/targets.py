"""``persam-video personalize`` and ``segment``: targets that travel between clips and photos."""

from __future__ import annotations

from typing import Any

import click

from persam_video.cli import common
from persam_video.cli.common import (
    InputError,
    config_options,
    friendly_errors,
    model_options,
    out_option,
    plural,
    quiet_option,
    threads_option,
)


def _deprecated_output(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is not None:
        common.deprecated("--output", "--out (or -o)")
    return value


@click.command()
@click.argument("image", type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "--mask",
    "masks",
    required=True,
    multiple=True,
    type=click.Path(path_type=str),
    help="Mask of IMAGE; repeat --image/--mask pairs for more reference shots.",
)
@click.option(
    "--image",
    "images",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=str),
    help="Another reference image (multi-shot), followed by its --mask.",
)
@click.option(
    "--object",
    "object_id",
    type=click.IntRange(1, 254),
    help="Which id of a multi-object mask is the target (default: its only object).",
)
@click.option(
    "-o",
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=str),
    help="Target file to write (e.g. cat.target).",
)
@click.option(
    "--output",
    "old_out_path",
    type=click.Path(dir_okay=False, path_type=str),
    hidden=True,
    callback=_deprecated_output,
)
@common.resize_mask_option("a mask")
@model_options(from_targets=False)
@config_options
@quiet_option
@threads_option
@friendly_errors
def personalize(
    image: str,
    masks: tuple[str, ...],
    images: tuple[str, ...],
    object_id: int | None,
    out_path: str | None,
    old_out_path: str | None,
    resize_mask: bool,
    model_name: str | None,
    checkpoint: str | None,
    device: str,
    config_name: str,
    overrides: tuple[str, ...],
    finetune: bool,
    quiet: bool,
    threads: int,
) -> None:
    """Learn a target from reference image(s) and mask(s); save it for track/segment.

    With several shots the target embedding is the mean of the shots' embeddings (each shot
    counts equally); --finetune also learns the PerSAM-F mask weights on all shots.
    """
    from persam_video.apps.target_file import save_target
    from persam_video.atomic import check_not_overwriting, check_writable_file
    from persam_video.io import read_image
    from persam_video.memory.models import is_memory_model
    from persam_video.model.registry import model_metadata
    from persam_video.persam import PerSAM

    output = out_path or old_out_path
    if output is None:
        raise click.UsageError("Missing option '--out' / '-o'.")
    paths = (image, *images)
    check_not_overwriting([*paths, *masks], [output])
    check_writable_file(output)
    if len(masks) != len(paths):
        raise InputError(f"got {len(paths)} images but {len(masks)} masks: give one --mask each")
    model_name = common.model_for_targets(model_name, memory=True)
    config = common.build_config(config_name, overrides, finetune, model_name)
    shots = []
    for image_path, mask_path in zip(paths, masks, strict=True):
        rgb = read_image(image_path)
        shots.append((rgb, select_object(mask_path, rgb.shape[:2], object_id, resize_mask)))
    if is_memory_model(model_name):  # the memory engine's own features
        from persam_video.memory.targets import personalize as personalize_memory

        engine, metadata = common.memory_engine(
            model_name,
            checkpoint,
            device,
            quiet,
            config=config,
            speed=("auto", 1, False, False),
        )
        target = personalize_memory(engine.model, shots)
    else:
        metadata = model_metadata(model_name, checkpoint)
        sam = common.load_model(model_name, checkpoint, device, quiet)
        persam = PerSAM(sam, config, progress=not quiet)
        target = persam.personalize_shots(shots)
    save_target(output, target, model=metadata, config=config, shots=len(shots))
    tuned = ""
    if target.mask_weights is not None and target.finetune_info is not None:
        info = target.finetune_info
        weights = ", ".join(f"{w:.3f}" for w in target.mask_weights.tolist())
        tuned = (
            f" with PerSAM-F weights {weights}: {info['steps']} steps in {info['seconds']:.1f} s, "
            f"{info['steps_per_second']:.0f} steps/s"
        )
    click.echo(f"saved {output} ({plural(len(shots), 'shot')}{tuned})")


def select_object(
    mask_path: str, size: tuple[int, int], object_id: int | None, resize: bool = False
) -> Any:
    """The (H, W) bool mask of one object of a mask file (resized to ``size`` with ``resize``)."""
    from persam_video.apps.track import load_first_mask

    annotation = load_first_mask(mask_path, size, resize=resize)
    ids = list(annotation.ids)
    if object_id is None:
        if len(ids) != 1:
            raise InputError(f"{mask_path} holds objects {ids}: choose one with --object")
        object_id = ids[0]
    if object_id not in ids:
        raise InputError(f"{mask_path} has no object {object_id} (it has {ids})")
    return annotation.mask(object_id)


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option(
    "--target",
    "target_path",
    required=True,
    type=click.Path(path_type=str),
    help="Target file from 'persam-video personalize'.",
)
@out_option("Output folder: <name>.png masks, <name>_overlay.jpg, results.json.", file_okay=False)
@model_options
@config_options(finetune=False)
@quiet_option
@threads_option
@friendly_errors
def segment(
    images: tuple[str, ...],
    target_path: str,
    out_dir: str,
    model_name: str | None,
    checkpoint: str | None,
    device: str,
    config_name: str,
    overrides: tuple[str, ...],
    finetune: bool,
    quiet: bool,
    threads: int,
) -> None:
    """Find a saved target in IMAGES (files or folders of images), e.g. your pet in an album.

    Each image gets a mask (empty where the target is not confidently found) and an overlay.
    """
    from persam_video.apps.images import check_images_survive, segment_images
    from persam_video.model.registry import model_metadata

    if finetune:
        raise InputError(
            "segment uses the target as saved: --finetune applies when personalizing "
            "(persam-video personalize --finetune), and its PerSAM-F weights travel in the target"
        )
    config = common.build_config(config_name, overrides)
    check_images_survive(images, out_dir)  # check the inputs before loading the model
    target_files = common.read_targets((target_path,))
    model_name = common.model_for_targets(model_name, target_files)
    metadata = model_metadata(model_name, checkpoint)
    targets = common.load_targets(target_files, (target_path,), metadata)
    sam = common.load_model(model_name, checkpoint, device, quiet)
    (target,) = common.targets_on(targets, sam.device)
    with common.resumable(
        "no output was written (segment writes them all at the end)", "to segment the images"
    ):
        summary = segment_images(
            sam,
            config,
            target,
            images,
            out_dir,
            progress=not quiet,
            metadata={**metadata, "threads": threads},
        )
    click.echo(
        f"found the target in {summary.found} of {summary.images} images; outputs in {out_dir}"
    )
