"""The ``persam-video`` command line: a thin layer over the Python API.

One module per command group (``track``, ``targets``: personalize/segment, ``batch``, ``find``,
``davis``: davis/eval, ``weights``, ``demo``, ``frame``, ``config``, ``app``: the web app); the
options they share are declared once in :mod:`~persam_video.cli.common`. Errors in what the user
gave are one line on stderr and exit code 2; no traceback.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

import click

from persam_video._version import __version__
from persam_video.cli.app import app_command
from persam_video.cli.batch import batch
from persam_video.cli.common import EXIT_INTERRUPTED
from persam_video.cli.config import config_group
from persam_video.cli.davis import davis, eval_command
from persam_video.cli.demo import demo
from persam_video.cli.find import find
from persam_video.cli.frame import frame
from persam_video.cli.targets import personalize, segment
from persam_video.cli.track import track
from persam_video.cli.weights import weights
from persam_video.runtime import prefer_huge_pages


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="persam-video")
def cli() -> None:
    """One-shot video object segmentation with a personalized Segment Anything Model (PerSAM).

    Mark an object on one frame; persam-video finds it in every frame and writes masks,
    overlay videos and cut-outs.
    """


for _command in (
    weights,
    track,
    demo,
    personalize,
    segment,
    batch,
    find,
    davis,
    eval_command,
    frame,
    config_group,
    app_command,
):
    cli.add_command(_command)


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM (``kill``, a job scheduler stopping the run) is handled as Ctrl-C: what was
    finished is kept under ``.partial`` names, the temporaries are removed."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    prefer_huge_pages()  # before torch is imported by a command
    signal.signal(signal.SIGTERM, _terminate)
    try:
        cli.main(args=argv, prog_name="persam-video", standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - click handles it in standalone mode
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)


__all__ = ["cli", "main"]
