"""``persam-video demo``: the whole product offline on a generated clip."""

from __future__ import annotations

import click

from persam_video.cli import common
from persam_video.cli.common import friendly_errors, out_option, quiet_option, threads_option


@click.command()
@out_option("Output folder.", required=False, default="persam-demo", file_okay=False)
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
@quiet_option
@threads_option
@friendly_errors
def demo(out_dir: str, seed: int, config_name: str, quiet: bool, threads: int) -> None:
    """Try persam-video offline: track a generated clip with the bundled demo model.

    The demo model is a small SAM-architecture model trained on procedural scenes, shipped for
    trying the tool and for tests; it is not SAM. Writes the clip, the usual track outputs and
    metrics.json (J&F against the generated ground truth) to --out.
    """
    from persam_video.apps.demo import run_demo
    from persam_video.atomic import check_out_dir
    from persam_video.model.demo import DEMO_MODEL_NAME
    from persam_video.model.registry import model_metadata
    from persam_video.video import VideoTracker

    config = common.build_config(config_name, ())
    check_out_dir(out_dir)
    sam = common.load_model(DEMO_MODEL_NAME, None, "auto", quiet)
    result = run_demo(
        VideoTracker(sam, config),
        out_dir,
        seed=seed,
        progress=not quiet,
        metadata=model_metadata(DEMO_MODEL_NAME),
    )
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
        f"  report:  {out / 'report.html'} (open it in a browser)\n"
        f"  scores:  {out / 'metrics.json'}; per-frame results: {out / 'results.json'}"
    )
