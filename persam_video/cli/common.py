"""What every command shares: one-line errors, the shared options (declared once), and the
builders that turn options into API objects.

Heavy modules (torch, segment-anything, decord, PyAV) are imported inside the functions, so
``--help`` and ``--version`` answer at once.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

import click

from persam_video.config import MAX_KEYFRAME_GAP
from persam_video.runtime import MAX_THREADS

#: Exit code for bad input (missing files, invalid masks, unknown config keys, ...).
EXIT_BAD_INPUT = 2
#: Exit code after Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130
#: Exit code when some clips of a batch failed (the others are done).
EXIT_SOME_FAILED = 1
#: Floor of the elapsed time in a rate (no division by zero on the first clip).
MIN_SECONDS = 1e-9
#: The model commands use when none is named (and no target names one).
DEFAULT_MODEL = "vit_b"
#: Longest option value quoted back in an error (characters).
MAX_SHOWN_OPTION = 20
#: --precision's choices: ``persam_video.persam.encoder.PRECISIONS`` (not imported here, so
#: that ``--help`` does not load torch; a test checks that the two agree).
PRECISIONS: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16", "int8")

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
    from persam_video.model.checkpoints import WeightsError
    from persam_video.model.hq import MissingExtraError

    return (
        MissingExtraError,
        ValueError,
        ConfigError,
        WeightsError,
        FileNotFoundError,
        NotADirectoryError,
        VideoWriteError,
    )


def friendly_errors(func: F) -> F:
    """Turn the API's user-facing exceptions into :class:`InputError` (one line, exit 2); after
    a command that succeeded, say the model's warnings (:func:`say_model_warning`)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = _one_line_errors(func, args, kwargs)
        except BaseException:
            _model_warnings.clear()  # an error is one line: the warning would be a second
            raise
        for warning in dict.fromkeys(_model_warnings):
            click.echo(f"warning: {warning}", err=True)
        _model_warnings.clear()
        return result

    return wrapper  # type: ignore[return-value]


def _one_line_errors(func: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    """``func(*args, **kwargs)``, its user-facing exceptions raised as :class:`InputError`."""
    try:
        return func(*args, **kwargs)
    except click.ClickException:
        raise
    except _user_errors() as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise InputError(message) from None
    except OSError as exc:  # a full disk, a read-only or vanished folder: the system's word
        if exc.errno is None:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        raise InputError(f"{where}{exc.strerror or os.strerror(exc.errno)}") from None


def exit_interrupted(kept: str, rest: str = "to do the rest") -> NoReturn:
    """After Ctrl-C, or SIGTERM (which :func:`persam_video.cli.main` raises as Ctrl-C): one
    line on stderr saying what is ``kept`` and that the same command does the rest, and exit
    code 130 (click's own handling would say ``Aborted!`` and exit 1)."""
    click.echo(f"interrupted: {kept}; run the same command again {rest}", err=True)
    sys.exit(EXIT_INTERRUPTED)


@contextlib.contextmanager
def resumable(kept: str, rest: str = "to do the rest") -> Iterator[None]:
    """Ctrl-C or SIGTERM inside the block ends the command with :func:`exit_interrupted`."""
    try:
        yield
    except KeyboardInterrupt:
        exit_interrupted(kept, rest)


def deprecated(old: str, new: str) -> None:
    """One line on stderr saying that an old spelling still works for this release."""
    click.echo(
        f"note: {old} is deprecated and will be removed in the next release; use {new}", err=True
    )


class ClipProgress:
    """The clips bar of ``batch`` and ``find`` (frames/s over the clips finished), used as a
    context manager: Ctrl-C inside it says the finished clips are kept and exits 130."""

    def __init__(self, total: int, quiet: bool, out_dir: str) -> None:
        from persam_video.progress import progress_bar

        self.out_dir = out_dir
        self.frames = 0
        self.start = time.perf_counter()
        self.bar = progress_bar(total=total, unit="clip", desc="clips", enabled=not quiet)

    def __call__(self, outcome: Any) -> None:
        """Count one finished (or failed) clip."""
        self.frames += outcome.frames
        self.bar.update(1)
        rate = self.frames / max(time.perf_counter() - self.start, MIN_SECONDS)
        self.bar.set_postfix_str(f"{rate:.1f} frames/s")

    def skipped(self, count: int) -> None:
        """Count the clips a rerun found already done."""
        self.bar.update(count)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def __enter__(self) -> ClipProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.bar.__exit__(exc_type, exc, tb)
        if exc_type is KeyboardInterrupt:
            exit_interrupted(f"the finished clips are kept in {self.out_dir}")


def plural(count: int, noun: str) -> str:
    """``1 object``, ``2 objects``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


# --------------------------------------------------------------------------- shared options
def _apply(func: F, options: list[Callable[[F], F]]) -> F:
    for option in reversed(options):
        func = option(func)
    return func


def resize_mask_option(what: str) -> Callable[[F], F]:
    """--resize-mask: resize ``what`` of another size than its image (nearest neighbour)."""
    return click.option(
        "--resize-mask",
        is_flag=True,
        help=f"Resize {what} whose size differs from the frames (nearest neighbour).",
    )


def quiet_option(func: F) -> F:
    """-q/--quiet."""
    return click.option("-q", "--quiet", is_flag=True, help="No progress bars.")(func)


def out_option(
    help_text: str, *, required: bool = True, default: str | None = None, file_okay: bool = True
) -> Callable[[F], F]:
    """--out: the folder (or file) a command writes."""
    return click.option(
        "--out",
        "out_dir",
        required=required,
        default=default,
        show_default=default is not None,
        type=click.Path(file_okay=file_okay, path_type=str),
        help=help_text,
    )


def threads_option(func: F) -> F:
    """--threads N|auto, applied before the command runs (the chosen count is passed on as
    ``threads``)."""

    @functools.wraps(func)
    def wrapper(*args: Any, threads: str | None = None, **kwargs: Any) -> Any:
        from persam_video.runtime import apply_threads, choose_threads

        try:
            count = choose_threads(threads)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        return func(*args, threads=apply_threads(count), **kwargs)

    return click.option(
        "--threads",
        metavar="N|auto",
        default=None,
        help=f"CPU threads for torch, 1 to {MAX_THREADS}. auto (the default, or "
        "$PERSAM_VIDEO_THREADS, checked the same way): the usable "
        "CPUs less the machine's current load, at least 1; on a busy machine more threads "
        "than free cores run many times slower.",
    )(wrapper)


def config_options(func: F | None = None, *, finetune: bool = True) -> Any:
    """--config, --set KEY=VALUE (repeatable) and --finetune (hidden where the command does not
    personalize, so that it can refuse it in one line)."""
    if func is None:
        return functools.partial(config_options, finetune=finetune)
    return _apply(
        func,
        [
            click.option(
                "--config",
                "config_name",
                default="default",
                show_default=True,
                help="Preset (default, paper_video, paper_image, fast) or a YAML file.",
            ),
            click.option(
                "--set",
                "overrides",
                multiple=True,
                metavar="KEY=VALUE",
                help="Override a config field, e.g. --set track.momentum=0.8 (repeatable); "
                "with a memory tracker its settings, e.g. --set memory.lost_after=5.",
            ),
            click.option(
                "--finetune",
                is_flag=True,
                hidden=not finetune,
                help="PerSAM-F: learn the mask weights on the reference "
                "(finetune.steps, finetune.lr).",
            ),
        ],
    )


def model_options(
    func: F | None = None, *, default: str = DEFAULT_MODEL, from_targets: bool = True
) -> Any:
    """--model (None when not given: see :func:`model_for_targets`), --checkpoint, --device."""
    if func is None:
        return functools.partial(model_options, default=default, from_targets=from_targets)
    shown = f"{default}, or the model the --target was made with" if from_targets else default
    return _apply(
        func,
        [
            click.option(
                "--model",
                "model_name",
                default=None,
                help="vit_h, vit_l, vit_b (official SAM), mobile_sam (MobileSAM: about 5x faster "
                "than vit_b on CPUs), sam_hq_vit_h, sam_hq_vit_l, sam_hq_vit_b, sam_hq_vit_tiny "
                '(HQ-SAM: finer masks; the last four and mobile_sam need pip install ".[hq]"), '
                "downloaded on first use, or demo (bundled small demo model, not SAM); on videos "
                "also the memory trackers sam2.1_hiera_tiny, sam2.1_hiera_small, "
                "sam2.1_hiera_base_plus, sam2.1_hiera_large, edgetam, sam3_tracker (SAM 2 family, "
                'pip install ".[sam2]"; settings --set memory.KEY=VALUE). '
                f"[default: {shown}]",
            ),
            click.option(
                "--checkpoint",
                type=click.Path(),
                help="Local checkpoint file for --model instead of the cache (for a memory "
                "tracker: its model folder, as a Hugging Face hub snapshot holds it).",
            ),
            click.option(
                "--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."
            ),
        ],
    )


#: What ``--keyframes`` accepts besides a positive interval.
KEYFRAMES_AUTO = "auto"


def keyframe_overrides(value: str | None) -> list[str]:
    """The config overrides ``--keyframes 1|N|auto`` stands for (none when not given); N is at
    most :data:`~persam_video.config.MAX_KEYFRAME_GAP`."""
    if value is None:
        return []
    text = value.strip().lower()
    if text == KEYFRAMES_AUTO:
        return ["keyframes.mode=auto"]
    valid = text.isascii() and text.isdigit() and len(text) <= len(str(MAX_KEYFRAME_GAP))
    if not valid or not 1 <= int(text) <= MAX_KEYFRAME_GAP:
        shown = value if len(value) <= MAX_SHOWN_OPTION else f"{value[:MAX_SHOWN_OPTION]}..."
        raise InputError(
            f"--keyframes must be 1, a larger interval N or auto (N at most "
            f"{MAX_KEYFRAME_GAP}), got {shown!r}"
        )
    return ["keyframes.mode=interval", f"keyframes.interval={int(text)}"]


def keyframes_option(func: F) -> F:
    """--keyframes 1|N|auto: a shortcut for the ``keyframes`` config section, appended to the
    command's --set overrides (so it needs :func:`config_options`; later --set still win over
    a preset, --keyframes over both)."""

    @functools.wraps(func)
    def wrapper(*args: Any, keyframes: str | None = None, **kwargs: Any) -> Any:
        extra = keyframe_overrides(keyframes)
        if extra:
            kwargs["overrides"] = (*kwargs.get("overrides", ()), *extra)
        return func(*args, **kwargs)

    return click.option(
        "--keyframes",
        metavar="1|N|auto",
        default=None,
        help=f"SAM on every frame (1, the default), on every N-th frame (N up to "
        f"{MAX_KEYFRAME_GAP}), or on keyframes chosen "
        "when the optical flow becomes unreliable (auto, at least every "
        "keyframes.max_gap frames); the frames in between get the masks carried along "
        "the flow. Sets keyframes.mode and keyframes.interval.",
    )(wrapper)


def speed_options(func: F) -> F:
    """--precision, --batch-frames, --compile, --stock-encoder, --keyframes."""
    func = keyframes_option(func)
    return _apply(
        func,
        [
            click.option(
                "--precision",
                type=click.Choice(list(PRECISIONS)),
                default="auto",
                show_default=True,
                help="Image encoder precision; auto is bfloat16 on CUDA, else float32. "
                "int8 (CPUs only): the encoder's linear layers in int8.",
            ),
            click.option(
                "--batch-frames",
                default=1,
                show_default=True,
                type=click.IntRange(min=1),
                help="Frames encoded together (faster on GPUs; the encoder does not depend "
                "on earlier masks).",
            ),
            click.option(
                "--compile",
                "compile_encoder",
                is_flag=True,
                help="Run the image encoder through torch.compile.",
            ),
            click.option(
                "--stock-encoder",
                is_flag=True,
                help="Use segment-anything's own encoder attention instead of the faster "
                "equivalent one.",
            ),
        ],
    )


def ray_options(func: F) -> F:
    """--ray [ADDRESS], --workers, --gpus-per-worker (commands run by the batch engine)."""
    return _apply(
        func,
        [
            click.option(
                "--ray",
                "ray_address",
                is_flag=False,
                flag_value="local",
                default=None,
                metavar="[ADDRESS]",
                help="Run on Ray: --ray alone (or --ray local) starts a local cluster; "
                "--ray auto or ray://host:10001 connects to a running one.",
            ),
            click.option(
                "--workers",
                default=1,
                show_default=True,
                type=click.IntRange(min=1),
                help="Ray actors (each loads the model once).",
            ),
            click.option(
                "--gpus-per-worker",
                default=0.0,
                show_default=True,
                type=click.FloatRange(min=0.0),
                help="GPUs reserved per Ray actor.",
            ),
        ],
    )


def output_options(func: F) -> F:
    """--overlay/--no-overlay, --masked-video, --format, --report/--no-report and --heatmap
    (what a tracked clip writes)."""
    return _apply(
        func,
        [
            click.option(
                "--overlay/--no-overlay",
                default=True,
                show_default=True,
                help="Write overlay.mp4 (objects in colour with contours).",
            ),
            click.option(
                "--masked-video",
                type=click.Choice(["none", "cutout", "blur", "alpha"]),
                default="none",
                show_default=True,
                help="Also write masked.mp4 (cutout on black, blurred background) or "
                "masked.mov (alpha: transparent background, PNG in MOV).",
            ),
            click.option(
                "--format",
                "mask_format",
                type=click.Choice(["davis", "per-object-png", "coco-rle"]),
                default="davis",
                show_default=True,
                help="Masks as DAVIS palette PNGs (masks/00000.png), one binary PNG per "
                "object (masks/<id>/00000.png) or COCO RLE lines (masks.jsonl).",
            ),
            click.option(
                "--report/--no-report",
                default=True,
                show_default=True,
                help="Write report.html (timelines per object, key frames, links to the videos).",
            ),
            click.option(
                "--heatmap",
                is_flag=True,
                help="Also write similarity.mp4: each object's location confidence over "
                "the frame (one panel per object), to see why a frame failed.",
            ),
        ],
    )


# --------------------------------------------------------------------------- builders
def build_config(
    config_name: str,
    overrides: tuple[str, ...],
    finetune: bool = False,
    model_name: str | None = None,
) -> Any:
    """The engine config of ``model_name``: PerSAM's --config preset with --set overrides
    (and --finetune) applied, or for a memory tracker the memory engine's settings (its
    ``memory.*`` --set overrides; --config and --finetune are PerSAM's and refused)."""
    from persam_video.apps.engines import engine_config
    from persam_video.config import load_config
    from persam_video.memory.models import is_memory_model

    if model_name is not None and is_memory_model(model_name):
        if config_name != "default" or finetune:
            raise InputError(
                f"--config and --finetune configure PerSAM's engine; {model_name} runs on the "
                "memory engine (its settings: --set memory.redetect=..., memory.lost_after=..., "
                "memory.accept=...)"
            )
        return engine_config(model_name, None, overrides)
    extra = ["finetune.enabled=true"] if finetune else []
    return engine_config(
        model_name or DEFAULT_MODEL, load_config(config_name), [*overrides, *extra]
    )


def check_model_name(model_name: str, *, memory: bool = False) -> str:
    """``model_name`` if it is a known model (a SAM v1-family model, or with ``memory`` a
    memory tracker too: the commands that run the memory engine), else an
    :class:`InputError`."""
    from persam_video.memory.models import MEMORY_MODELS
    from persam_video.model.registry import model_names

    known = [*model_names(), *MEMORY_MODELS]
    if model_name not in known:
        raise InputError(f"unknown model {model_name!r}; known: {', '.join(known)}")
    if model_name in MEMORY_MODELS and not memory:
        raise InputError(MEMORY_ONLY_TRACK.format(model=model_name))
    return model_name


#: What the commands that run PerSAM's engine only (``segment``) say of a memory tracker.
MEMORY_ONLY_TRACK = (
    "{model} is a memory tracker (SAM 2 family): it runs on videos (track, personalize, find, "
    "batch, davis, app); this command needs a SAM v1-family --model (vit_b, mobile_sam, "
    "sam_hq_vit_b, ...)"
)


def load_model(model_name: str, checkpoint: str | None, device: str, quiet: bool) -> Any:
    """Load the SAM model named on the command line (the stock model), after
    :func:`say_model_warning`; without ``quiet``, say which model runs on which device."""
    from persam_video.memory.models import is_memory_model
    from persam_video.model.registry import load_sam

    if is_memory_model(model_name):
        raise InputError(MEMORY_ONLY_TRACK.format(model=model_name))
    say_model_warning(model_name)
    sam = load_sam(model_name, checkpoint=checkpoint, device=device, progress=not quiet)
    if not quiet:  # the run's first line: which model runs, and where
        click.echo(f"model: {model_name} on {sam.device}", err=True)
    return sam


#: Warnings about the model of the running command, said as its last line when it succeeds
#: (:func:`friendly_errors`; an error stays one line).
_model_warnings: list[str] = []


def say_model_warning(model_name: str, *, now: bool = False) -> None:
    """With the demo model, one line on stderr (even with ``-q``) saying it is not SAM: at the
    end of a command that succeeds, or ``now`` (the app, which serves until stopped)."""
    from persam_video.model.demo import DEMO_MODEL_NAME, DEMO_WARNING

    if model_name != DEMO_MODEL_NAME:
        return
    if now:
        click.echo(f"warning: {DEMO_WARNING}", err=True)
    else:
        _model_warnings.append(DEMO_WARNING)


def memory_engine(
    model_name: str,
    checkpoint: str | None,
    device: str,
    quiet: bool,
    *,
    config: Any,
    speed: tuple[Any, ...],
) -> tuple[Any, dict[str, Any]]:
    """The memory engine of a memory tracker named on the command line, with ``config`` (a
    :class:`~persam_video.memory.config.MemoryConfig`), and the model's metadata for
    results.json; encoder ``speed`` options other than the defaults are refused in one line,
    before the model loads: they configure PerSAM's engine."""
    from persam_video.apps.engines import load_engine_model

    check_memory_speed(model_name, speed)
    model = load_engine_model(model_name, checkpoint, device)
    if not quiet:  # the run's first line: which model runs, and where
        click.echo(f"model: {model_name} on {model.device} (memory engine)", err=True)
    return model.engine(config), model.metadata


def load_engine(
    model_name: str,
    checkpoint: str | None,
    device: str,
    quiet: bool,
    config: Any,
    speed: tuple[Any, ...],
    target_files: list[Any],
    target_paths: tuple[str, ...],
) -> tuple[Any, dict[str, Any], list[Any]]:
    """The engine of ``model_name`` with ``config``, the model's metadata for results.json and
    the saved targets (checked to be made with this model) on its device. For PerSAM's
    models the targets are checked before the model loads (a mismatch is said at once)."""
    from persam_video.memory.models import is_memory_model
    from persam_video.model.registry import model_metadata
    from persam_video.video import VideoTracker

    if is_memory_model(model_name):
        engine, metadata = memory_engine(
            model_name, checkpoint, device, quiet, config=config, speed=speed
        )
        loaded = load_targets(target_files, target_paths, metadata)
        return engine, metadata, targets_on(loaded, engine.model.device)
    metadata = model_metadata(model_name, checkpoint)
    loaded = load_targets(target_files, target_paths, metadata)
    sam = load_model(model_name, checkpoint, device, quiet)
    encoder = make_encoder(sam, *speed)
    engine = VideoTracker(sam, config, encoder, progress=not quiet)
    return engine, metadata, targets_on(loaded, sam.device)


def check_memory_speed(model_name: str, speed: tuple[Any, ...]) -> None:
    """Refuse (one line) PerSAM's frame-encoder options for a memory tracker."""
    precision, batch_frames, compile_encoder, stock_encoder = speed
    if precision not in ("auto", "float32"):
        raise InputError(
            f"--precision configures PerSAM's frame encoder; {model_name} runs on the memory "
            "engine (float32)"
        )
    if batch_frames != 1 or compile_encoder or stock_encoder:
        raise InputError(
            f"--batch-frames, --compile and --stock-encoder configure PerSAM's frame encoder; "
            f"{model_name} runs on the memory engine"
        )


def check_precision(precision: str, device: str) -> None:
    """An :class:`InputError` for ``--precision int8`` on a device other than the CPU (said
    before the model loads). ``--device auto`` counts as the device it picks."""
    from persam_video.model.registry import resolve_device

    if precision == "int8" and (kind := resolve_device(device).type) != "cpu":
        raise InputError(
            f"--precision int8 runs on CPUs only (--device is {kind} here); use "
            "--device cpu, or --precision bfloat16/float16 on the GPU"
        )


def make_encoder(
    sam: Any, precision: str, batch_frames: int, compile_encoder: bool, stock_encoder: bool
) -> Any:
    """The FrameEncoder the speed options ask for."""
    from persam_video.persam.encoder import FrameEncoder

    return FrameEncoder(
        sam,
        attention="stock" if stock_encoder else "fast",
        precision=precision,
        batch_size=batch_frames,
        compile=compile_encoder,
    )


def read_targets(paths: tuple[str, ...]) -> list[Any]:
    """The target files of ``paths``, each read once (``TargetFile`` objects)."""
    from persam_video.apps.target_file import load_target

    return [load_target(path) for path in paths]


def load_targets(files: list[Any], paths: tuple[str, ...], model: dict[str, Any]) -> list[Any]:
    """The targets of target ``files`` (read from ``paths``), checked to be made with ``model``
    (before the model is loaded: a mismatch is said at once, not after a download)."""
    from persam_video.apps.target_file import check_compatible

    for loaded, path in zip(files, paths, strict=True):
        check_compatible(loaded, model, path)
    return [loaded.target for loaded in files]


def targets_on(targets: list[Any], device: Any) -> list[Any]:
    """The targets with their tensors on ``device``."""
    from persam_video.apps.target_file import to_device

    return [to_device(target, device) for target in targets]


def model_for_targets(
    model_name: str | None,
    target_files: list[Any] | None = None,
    default: str = DEFAULT_MODEL,
    *,
    memory: bool = False,
) -> str:
    """The model to load: the one named, else the one the target files were made with, else
    ``default`` (``memory``: the command runs memory trackers too, see
    :func:`check_model_name`)."""
    if model_name is not None:
        return check_model_name(model_name, memory=memory)
    made = {str(loaded.model.get("model")) for loaded in target_files or []}
    if len(made) > 1:
        raise InputError(f"the targets were made with different models ({', '.join(sorted(made))})")
    return check_model_name(made.pop() if made else default, memory=memory)
