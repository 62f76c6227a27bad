"""The ``persam-video`` command line: a thin layer over the Python API.

Heavy modules (torch, segment-anything, decord, PyAV) are imported inside the commands, so
``--help`` and ``--version`` answer at once. Errors in what the user gave are one line on stderr
and exit code 2; no traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from persam_video._version import __version__
from persam_video.runtime import prefer_huge_pages

#: Exit code for bad input (missing files, invalid masks, unknown config keys, ...).
EXIT_BAD_INPUT = 2
#: Exit code after Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130

F = TypeVar("F", bound=Callable[..., Any])


class InputError(click.ClickException):
    """Bad input from the user: one line, exit code 2."""

    exit_code = EXIT_BAD_INPUT

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types whose message is meant for the user (imported lazily)."""
    from persam_video.config import ConfigError
    from persam_video.io import VideoWriteError
    from persam_video.weights import WeightsError

    return (
        ValueError,
        ConfigError,
        WeightsError,
        FileNotFoundError,
        NotADirectoryError,
        VideoWriteError,
    )


def friendly_errors(func: F) -> F:
    """Turn the API's user-facing exceptions into :class:`InputError` (one line, exit 2)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except click.ClickException:
            raise
        except _user_errors() as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise InputError(message) from None

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="persam-video")
def cli() -> None:
    """One-shot video object segmentation with a personalized Segment Anything Model (PerSAM).

    Mark an object on one frame; persam-video finds it in every frame and writes masks,
    overlay videos and cut-outs.
    """


# --------------------------------------------------------------------------- weights
@cli.group()
def weights() -> None:
    """List, download or locate the official SAM checkpoints."""


@weights.command("list")
def weights_list() -> None:
    """Show the known checkpoints and whether they are in the cache."""
    from persam_video.weights import CHECKPOINTS, cache_dir, checkpoint_path

    click.echo(f"cache: {cache_dir()}  (set $PERSAM_VIDEO_CACHE to move it)")
    for name, ckpt in CHECKPOINTS.items():
        path = checkpoint_path(name)
        state = "cached" if path.is_file() and path.stat().st_size == ckpt.size else "not cached"
        click.echo(f"{name:6} {ckpt.size / 2**20:8.0f} MiB  {state:10}  {ckpt.url}")
    click.echo("demo   bundled small demo model (not SAM: for trying persam-video offline)")


@weights.command("download")
@click.argument("name")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@friendly_errors
def weights_download(name: str, quiet: bool) -> None:
    """Download checkpoint NAME (vit_h, vit_l, vit_b) into the cache and verify its SHA-256."""
    from persam_video.weights import ensure_checkpoint

    click.echo(str(ensure_checkpoint(name, progress=not quiet)))


@weights.command("path")
@click.argument("name")
@friendly_errors
def weights_path(name: str) -> None:
    """Print where checkpoint NAME is (or would be) stored."""
    from persam_video.weights import checkpoint_path

    click.echo(str(checkpoint_path(name)))


# --------------------------------------------------------------------------- shared options
def model_options(
    func: F | None = None, *, override_flag: str = "--set", default_model: str = "vit_b"
) -> Any:
    """--model, --checkpoint, --device, --config, and ``override_flag`` KEY=VALUE overrides."""
    if func is None:
        return functools.partial(
            model_options, override_flag=override_flag, default_model=default_model
        )
    options = [
        click.option("--model", "model_name", default=default_model, show_default=True,
                     help="vit_h, vit_l, vit_b (official SAM, downloaded on first use) or demo "
                          "(bundled small demo model, not SAM)."),
        click.option("--checkpoint", type=click.Path(dir_okay=False),
                     help="Local checkpoint file for --model instead of the cache."),
        click.option("--device", default="auto", show_default=True,
                     help="auto, cpu, cuda or cuda:N."),
        click.option("--config", "config_name", default="default", show_default=True,
                     help="Preset (default, paper_video, paper_image, fast) or a YAML file."),
        click.option("--finetune", is_flag=True,
                     help="PerSAM-F: learn the mask weights on the reference "
                          "(finetune.steps, finetune.lr)."),
        click.option(override_flag, "overrides", multiple=True, metavar="KEY=VALUE",
                     help=f"Override a config field, e.g. {override_flag} track.momentum=0.8 "
                          "(repeatable)."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def speed_options(func: F) -> F:
    """--precision, --batch-frames, --compile, --stock-encoder."""
    options = [
        click.option("--precision", type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
                     default="auto", show_default=True,
                     help="Image encoder precision; auto is bfloat16 on CUDA, else float32."),
        click.option("--batch-frames", default=1, show_default=True, type=click.IntRange(min=1),
                     help="Frames encoded together (faster on GPUs; the encoder does not depend "
                          "on earlier masks)."),
        click.option("--compile", "compile_encoder", is_flag=True,
                     help="Run the image encoder through torch.compile."),
        click.option("--stock-encoder", is_flag=True,
                     help="Use segment-anything's own encoder attention instead of the faster "
                          "equivalent one."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def make_encoder(
    sam: Any, precision: str, batch_frames: int, compile_encoder: bool, stock_encoder: bool
) -> Any:
    """The FrameEncoder the speed options ask for."""
    from persam_video.encoder import FrameEncoder
    from persam_video.fast_encoder import set_fast_attention

    set_fast_attention(sam, enabled=not stock_encoder)
    return FrameEncoder(sam, precision=precision, batch_size=batch_frames, compile=compile_encoder)


def build_config(config_name: str, overrides: tuple[str, ...], finetune: bool = False) -> Any:
    """The config of --config with --set overrides (and --finetune) applied."""
    from persam_video.config import load_config

    extra = ["finetune.enabled=true"] if finetune else []
    return load_config(config_name).with_overrides([*overrides, *extra])


def load_targets(paths: tuple[str, ...], model: dict[str, Any], device: Any) -> list[Any]:
    """Read target files and check they were made with ``model``."""
    from persam_video.targets import check_compatible, load_target, to_device

    targets = []
    for path in paths:
        loaded = load_target(path)
        check_compatible(loaded, model, path)
        targets.append(to_device(loaded.target, device))
    return targets


def load_model(model_name: str, checkpoint: str | None, device: str, quiet: bool) -> Any:
    """Load the SAM model named on the command line."""
    from persam_video.models import load_sam

    return load_sam(model_name, checkpoint=checkpoint, device=device, progress=not quiet)


# --------------------------------------------------------------------------- track
@cli.command()
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
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=str),
    help="Output folder (created if needed).",
)
@model_options
@click.option(
    "--overlay/--no-overlay",
    default=True,
    show_default=True,
    help="Write overlay.mp4 (objects in colour with contours).",
)
@click.option(
    "--masked-video",
    type=click.Choice(["none", "cutout", "blur", "alpha"]),
    default="none",
    show_default=True,
    help="Also write masked.mp4 (cutout on black, blurred background) or masked.mov "
    "(alpha: transparent background, PNG in MOV).",
)
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
@click.option(
    "--fps",
    help="Frame rate of a folder of frames, e.g. 24 or 30000/1001 "
    "(default 24; video files carry their own).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@friendly_errors
def track(
    input_path: str, mask_path: str | None, target_paths: tuple[str, ...], out_dir: str,
    model_name: str, checkpoint: str | None, device: str, config_name: str, finetune: bool,
    overrides: tuple[str, ...], overlay: bool, masked_video: str, save_masks: bool,
    draw_points: bool, resize_mask: bool, precision: str, batch_frames: int,
    compile_encoder: bool, stock_encoder: bool, fps: str | None, quiet: bool,
) -> None:  # fmt: skip
    """Segment and track the object(s) of the first frame's mask through INPUT.

    INPUT is a video file (mp4, mov, avi, mkv, webm, ...) or a folder of frames sorted by name.
    Writes masks/, overlay.mp4, optionally masked.mp4/.mov, and results.json to --out.
    With --target instead of --mask, saved targets are searched for in every frame.
    """
    from persam_video.io import open_source
    from persam_video.models import model_metadata, model_names
    from persam_video.pipeline import (
        OutputOptions,
        check_out_dir,
        load_first_mask,
        track_to_folder,
    )
    from persam_video.tracker import VideoTracker, check_labels

    if (mask_path is None) == (not target_paths):
        raise InputError("give the first frame's mask with --mask, or saved targets with --target")
    config = build_config(config_name, overrides, finetune)
    if model_name not in model_names():
        raise InputError(f"unknown model {model_name!r}; known: {', '.join(model_names())}")
    options = OutputOptions(save_masks, overlay, masked_video, draw_points)
    with open_source(input_path, fps=fps) as frames:
        labels = None
        if mask_path is not None:
            labels = load_first_mask(mask_path, frames.size, resize=resize_mask)
            check_labels(labels, frames.size)
        check_out_dir(out_dir)
        metadata = model_metadata(model_name, checkpoint)
        sam = load_model(model_name, checkpoint, device, quiet)
        targets = load_targets(target_paths, metadata, sam.device) if target_paths else None
        encoder = make_encoder(sam, precision, batch_frames, compile_encoder, stock_encoder)
        summary = track_to_folder(
            VideoTracker(sam, config, encoder), frames, labels, out_dir, targets=targets,
            options=options, progress=not quiet, metadata=metadata,
        )  # fmt: skip
    objects = len(summary.object_ids)
    line = (
        f"tracked {objects} object{'s' if objects != 1 else ''} through {summary.frames} "
        f"frames in {summary.seconds:.1f} s ({summary.frames_per_second:.2f} frames/s)"
    )
    if summary.status == "complete":
        click.echo(f"{line}; outputs in {summary.out_dir}")
        return
    click.echo(f"{line}; partial results in {summary.out_dir}", err=True)
    if summary.status == "interrupted":
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    raise InputError(summary.error or "tracking stopped early")


# --------------------------------------------------------------------------- demo
@cli.command()
@click.option(
    "--out",
    "out_dir",
    default="persam-demo",
    show_default=True,
    type=click.Path(file_okay=False, path_type=str),
    help="Output folder.",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Which procedural clip to generate.",
)
@click.option(
    "--config",
    "config_name",
    default="default",
    show_default=True,
    help="Preset (default, paper_video, paper_image, fast) or a YAML file.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@friendly_errors
def demo(out_dir: str, seed: int, config_name: str, quiet: bool) -> None:
    """Try persam-video offline: track a generated clip with the bundled demo model.

    The demo model is a small SAM-architecture model trained on procedural scenes, shipped for
    trying the tool and for tests; it is not SAM. Writes the clip, the usual track outputs and
    metrics.json (J&F against the generated ground truth) to --out.
    """
    from persam_video.demo import run_demo
    from persam_video.demo_model import DEMO_MODEL_NAME
    from persam_video.models import model_metadata
    from persam_video.pipeline import check_out_dir
    from persam_video.tracker import VideoTracker

    config = build_config(config_name, ())
    check_out_dir(out_dir)
    sam = load_model(DEMO_MODEL_NAME, None, "auto", quiet)
    result = run_demo(
        VideoTracker(sam, config), out_dir, seed=seed, progress=not quiet,
        metadata=model_metadata(DEMO_MODEL_NAME),
    )  # fmt: skip
    tracked, static = result.metrics["tracked"], result.metrics["static_baseline"]
    out = result.summary.out_dir
    click.echo(
        f"demo clip {result.metrics['clip']['name']}: {result.summary.frames} frames, "
        f"{len(result.summary.object_ids)} objects, {result.summary.frames_per_second:.1f} "
        "frames/s\n"
        f"  J&F {tracked['J&F-Mean']:.3f} (J {tracked['J-Mean']:.3f}, F {tracked['F-Mean']:.3f}); "
        f"copying the first mask would give J&F {static['J&F-Mean']:.3f}\n"
        f"  input:   {result.video} and {result.first_mask}\n"
        f"  outputs: {out / 'overlay.mp4'}, {out / 'masked.mp4'}, {out / 'masks'}/\n"
        f"  scores:  {out / 'metrics.json'}; per-frame results: {out / 'results.json'}"
    )


# --------------------------------------------------------------------------- targets
@cli.command()
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
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=str),
    help="Target file to write (e.g. cat.target).",
)
@model_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bar while downloading.")
@friendly_errors
def personalize(
    image: str, masks: tuple[str, ...], images: tuple[str, ...], object_id: int | None,
    output: str, model_name: str, checkpoint: str | None, device: str, config_name: str,
    finetune: bool, overrides: tuple[str, ...], quiet: bool,
) -> None:  # fmt: skip
    """Learn a target from reference image(s) and mask(s); save it for track/segment.

    With several shots the target embedding is the mean of the shots' embeddings (each shot
    counts equally); --finetune also learns the PerSAM-F mask weights on all shots.
    """
    from persam_video.io import read_image
    from persam_video.models import model_metadata
    from persam_video.persam import PerSAM
    from persam_video.targets import save_target

    paths = (image, *images)
    if len(masks) != len(paths):
        raise InputError(f"got {len(paths)} images but {len(masks)} masks: give one --mask each")
    config = build_config(config_name, overrides, finetune)
    shots = []
    for image_path, mask_path in zip(paths, masks, strict=True):
        rgb = read_image(image_path)
        shots.append((rgb, select_object(mask_path, rgb.shape[:2], object_id)))
    metadata = model_metadata(model_name, checkpoint)
    persam = PerSAM(load_model(model_name, checkpoint, device, quiet), config)
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
    click.echo(f"saved {output} ({len(shots)} shot{'s' if len(shots) > 1 else ''}{tuned})")


def select_object(mask_path: str, size: tuple[int, int], object_id: int | None) -> Any:
    """The (H, W) bool mask of one object of a mask file."""
    from persam_video.pipeline import load_first_mask
    from persam_video.tracker import label_ids

    labels = load_first_mask(mask_path, size)
    ids = label_ids(labels)
    if object_id is None:
        if len(ids) != 1:
            raise InputError(f"{mask_path} holds objects {ids}: choose one with --object")
        object_id = ids[0]
    if object_id not in ids:
        raise InputError(f"{mask_path} has no object {object_id} (it has {ids})")
    return labels == object_id


@cli.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option(
    "--target",
    "target_path",
    required=True,
    type=click.Path(path_type=str),
    help="Target file from 'persam-video personalize'.",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=str),
    help="Output folder: <name>.png masks, <name>_overlay.jpg, results.json.",
)
@model_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@friendly_errors
def segment(
    images: tuple[str, ...], target_path: str, out_dir: str, model_name: str,
    checkpoint: str | None, device: str, config_name: str, finetune: bool,
    overrides: tuple[str, ...], quiet: bool,
) -> None:  # fmt: skip
    """Find a saved target in IMAGES (files or folders of images), e.g. your pet in an album.

    Each image gets a mask (empty where the target is not confidently found) and an overlay.
    """
    from persam_video.images import collect_images, segment_images
    from persam_video.models import model_metadata

    config = build_config(config_name, overrides, finetune)
    collect_images(images)  # check the inputs before loading the model
    metadata = model_metadata(model_name, checkpoint)
    sam = load_model(model_name, checkpoint, device, quiet)
    (target,) = load_targets((target_path,), metadata, sam.device)
    summary = segment_images(sam, config, target, images, out_dir, progress=not quiet)
    click.echo(
        f"found the target in {summary.found} of {summary.images} images; outputs in {out_dir}"
    )


# --------------------------------------------------------------------------- batch
#: Exit code when some clips of a batch failed (the others are done).
EXIT_SOME_FAILED = 1


@cli.command()
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=str),
    help="Output folder: one sub-folder per clip, failures.jsonl.",
)
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    default=None,
    metavar="[ADDRESS]",
    help="Run on Ray: --ray alone (or --ray local) starts a local cluster; "
    "--ray auto or ray://host:10001 connects to a running one.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Ray actors (each loads the model once).",
)
@click.option(
    "--gpus-per-worker",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0.0),
    help="GPUs reserved per Ray actor.",
)
@model_options
@click.option("--overlay/--no-overlay", default=True, show_default=True)
@click.option(
    "--masked-video",
    type=click.Choice(["none", "cutout", "blur", "alpha"]),
    default="none",
    show_default=True,
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@friendly_errors
def batch(
    manifest: str, out_dir: str, ray_address: str | None, workers: int, gpus_per_worker: float,
    model_name: str, checkpoint: str | None, device: str, config_name: str, finetune: bool,
    overrides: tuple[str, ...], overlay: bool, masked_video: str, quiet: bool,
) -> None:  # fmt: skip
    """Track every clip of MANIFEST (CSV or JSON lines: input, mask or target, name, overrides).

    Resumable: clips finished by an earlier run are skipped. A clip that fails is recorded in
    failures.jsonl and the others go on; the exit code is 1 when some failed.
    """
    import time

    from tqdm import tqdm

    from persam_video.batch import BatchSettings, ManifestError, read_manifest, run_batch
    from persam_video.models import model_names
    from persam_video.pipeline import check_out_dir

    config = build_config(config_name, overrides, finetune)
    if model_name not in model_names():
        raise InputError(f"unknown model {model_name!r}; known: {', '.join(model_names())}")
    try:
        jobs = read_manifest(manifest, config)
    except ManifestError as exc:
        lines = str(exc).splitlines()
        for line in lines:
            click.echo(f"error: {line}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    check_out_dir(out_dir)
    if ray_address is not None:
        from persam_video.batch_ray import import_ray

        import_ray()
    settings = BatchSettings(
        model=model_name, checkpoint=checkpoint, device=device, config=config.to_dict(),
        outputs={"overlay": overlay, "masked_video": masked_video},
    )  # fmt: skip
    start = time.perf_counter()
    frames = 0
    bar = tqdm(total=len(jobs), unit="clip", desc="clips", disable=quiet)

    def progress(outcome: Any) -> None:
        nonlocal frames
        frames += outcome.frames
        bar.update(1)
        bar.set_postfix_str(f"{frames / max(time.perf_counter() - start, 1e-9):.1f} frames/s")

    with bar:
        outcomes = run_batch(
            jobs, out_dir, settings, ray_address=ray_address, workers=workers,
            gpus_per_worker=gpus_per_worker, on_outcome=progress,
        )  # fmt: skip
        bar.update(sum(o.status == "skipped" for o in outcomes))
    width = max(len(o.name) for o in outcomes)
    click.echo(f"\n{'clip':{width}}  {'status':8} {'frames':>7} {'seconds':>8}  reason")
    for o in outcomes:
        click.echo(
            f"{o.name:{width}}  {o.status:8} {o.frames:7d} {o.seconds:8.1f}  {o.reason or ''}"
        )
    failed = [o for o in outcomes if o.status == "failed"]
    done = sum(o.status == "done" for o in outcomes)
    skipped = sum(o.status == "skipped" for o in outcomes)
    click.echo(
        f"{done} done, {skipped} already done, {len(failed)} failed; "
        f"{frames} frames in {time.perf_counter() - start:.1f} s; outputs in {out_dir}"
    )
    if failed:
        sys.exit(EXIT_SOME_FAILED)


# --------------------------------------------------------------------------- davis
def davis_set_options(func: F) -> F:
    """--davis-root, --set, --year: which DAVIS subset."""
    options = [
        click.option("--davis-root", required=True,
                     type=click.Path(file_okay=False, path_type=str),
                     help="DAVIS folder (with ImageSets/, JPEGImages/, Annotations/)."),
        click.option("--set", "subset", default="val", show_default=True,
                     help="Image set (ImageSets/<year>/<set>.txt)."),
        click.option("--year", type=click.Choice(["2016", "2017"]), default="2017",
                     show_default=True),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def evaluate_and_report(
    davis_root: str, subset: str, year: str, results: str, json_path: str | None,
    csv_path: str | None, quiet: bool,
) -> None:  # fmt: skip
    """Evaluate DAVIS results, print the tables, write the JSON/CSV files asked for."""
    from persam_video.davis import DavisDataset
    from persam_video.evaluation import evaluate_davis

    dataset = DavisDataset(davis_root, subset=subset, year=int(year))
    report = evaluate_davis(dataset, results, progress=not quiet)
    click.echo(report.format_table())
    if json_path:
        report.to_json(json_path)
    if csv_path:
        report.to_csv(csv_path)


@cli.command()
@davis_set_options
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=str),
    help="Results folder: <sequence>/<frame>.png; rerun to resume.",
)
@model_options(override_flag="--override", default_model="vit_h")
@speed_options
@click.option("--no-eval", is_flag=True, help="Only write the results; do not evaluate them.")
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False),
    help="Write the evaluation report as JSON.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@friendly_errors
def davis(
    davis_root: str, out_dir: str, subset: str, year: str, model_name: str,
    checkpoint: str | None, device: str, config_name: str, finetune: bool,
    overrides: tuple[str, ...], precision: str, batch_frames: int, compile_encoder: bool,
    stock_encoder: bool, no_eval: bool, json_path: str | None, quiet: bool,
) -> None:  # fmt: skip
    """Track every sequence of a DAVIS set from its first annotation, then evaluate (J&F).

    Sequences already complete in --out are skipped, so an interrupted run resumes.
    """
    from persam_video.davis import DavisDataset
    from persam_video.davis_runner import run_davis
    from persam_video.models import model_metadata
    from persam_video.tracker import VideoTracker

    config = build_config(config_name, overrides, finetune)
    dataset = DavisDataset(davis_root, subset=subset, year=int(year))
    sam = load_model(model_name, checkpoint, device, quiet)
    encoder = make_encoder(sam, precision, batch_frames, compile_encoder, stock_encoder)
    run = run_davis(
        VideoTracker(sam, config, encoder), dataset, out_dir,
        record=model_metadata(model_name, checkpoint), progress=not quiet,
    )  # fmt: skip
    click.echo(
        f"{len(run.done)} sequences tracked ({run.frames} frames, {run.seconds:.1f} s), "
        f"{len(run.skipped)} already complete; results in {run.out_dir}"
    )
    if not no_eval:
        evaluate_and_report(davis_root, subset, year, out_dir, json_path, None, quiet)


# --------------------------------------------------------------------------- eval
@cli.command("eval")
@davis_set_options
@click.option(
    "--results",
    required=True,
    type=click.Path(file_okay=False, path_type=str),
    help="Result folder: <sequence>/<frame>.png palette PNGs of object ids.",
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
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@friendly_errors
def eval_command(
    davis_root: str, results: str, subset: str, year: str, json_path: str | None,
    csv_path: str | None, quiet: bool,
) -> None:  # fmt: skip
    """Evaluate DAVIS results (semi-supervised J&F), equal to the official davis2017-evaluation."""
    evaluate_and_report(davis_root, subset, year, results, json_path, csv_path, quiet)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    prefer_huge_pages()  # before torch is imported by a command
    try:
        cli.main(args=argv, prog_name="persam-video", standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - click handles it in standalone mode
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":  # pragma: no cover
    main()
