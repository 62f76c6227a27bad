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
    from persam_video.weights import WeightsError

    return (ValueError, ConfigError, WeightsError, FileNotFoundError, NotADirectoryError)


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


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        cli.main(args=argv, prog_name="persam-video", standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - click handles it in standalone mode
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":  # pragma: no cover
    main()
