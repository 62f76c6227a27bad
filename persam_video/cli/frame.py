"""``persam-video frame``: one frame of a video or folder as an image."""

from __future__ import annotations

import click

from persam_video.cli.common import friendly_errors


@click.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=str))
@click.argument("index", metavar="N", type=click.IntRange(min=0))
@click.option(
    "-o",
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=str),
    help="Image to write (.png, or .jpg), e.g. to draw the first mask on.",
)
@friendly_errors
def frame(input_path: str, index: int, out_path: str) -> None:
    """Write frame N of INPUT (0-based, in decoding order: for variable frame rate an index,
    not a time) as an image."""
    from persam_video.apps.frames import export_frame

    height, width = export_frame(input_path, index, out_path)
    click.echo(f"wrote frame {index} ({width}x{height}) to {out_path}")
