"""``persam-video weights``: list, download or locate the official SAM checkpoints."""

from __future__ import annotations

import click

from persam_video.cli.common import friendly_errors, quiet_option


@click.group()
def weights() -> None:
    """List, download or locate the official SAM checkpoints."""


@weights.command("list")
def weights_list() -> None:
    """Show the known checkpoints and whether they are in the cache."""
    from persam_video.model.checkpoints import CHECKPOINTS, cache_dir, checkpoint_path, is_official

    click.echo(f"cache: {cache_dir()}  (set $PERSAM_VIDEO_CACHE to move it)")
    width = max(map(len, CHECKPOINTS))
    for name, ckpt in CHECKPOINTS.items():
        path = checkpoint_path(name)
        if ckpt.size is None:  # no published size: checked by reading the file
            cached, size = path.is_file() and is_official(path, ckpt), f"{ckpt.pinned_by:>10}"
        else:
            cached, size = (
                path.is_file() and path.stat().st_size == ckpt.size,
                f"{ckpt.size / 2**20:6.0f} MiB",
            )
        state = "cached" if cached else "not cached"
        click.echo(f"{name:{width}} {size}  {state:10}  {ckpt.url}")
    demo = "bundled small demo model (not SAM: for trying persam-video offline)"
    click.echo(f"{'demo':{width}} {demo}")


@weights.command("download")
@click.argument("name")
@quiet_option
@friendly_errors
def weights_download(name: str, quiet: bool) -> None:
    """Download checkpoint NAME (see ``weights list``) into the cache and verify it."""
    from persam_video.model.checkpoints import ensure_checkpoint
    from persam_video.model.demo import DEMO_MODEL_NAME, demo_weights_path

    if name == DEMO_MODEL_NAME:
        click.echo(f"{demo_weights_path()} (the demo model is bundled: nothing to download)")
        return
    click.echo(str(ensure_checkpoint(name, progress=not quiet, or_else="")))


@weights.command("path")
@click.argument("name")
@friendly_errors
def weights_path(name: str) -> None:
    """Print where checkpoint NAME is (or would be) stored."""
    from persam_video.model.checkpoints import checkpoint_path
    from persam_video.model.demo import DEMO_MODEL_NAME, demo_weights_path

    click.echo(str(demo_weights_path() if name == DEMO_MODEL_NAME else checkpoint_path(name)))
