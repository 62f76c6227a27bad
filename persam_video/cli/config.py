"""``persam-video config``: the effective configuration, with each field's meaning."""

from __future__ import annotations

import click

from persam_video.cli import common
from persam_video.cli.common import config_options, friendly_errors


@click.group("config")
def config_group() -> None:
    """Show the configuration a run would use."""


@config_group.command("show")
@config_options
@friendly_errors
def config_show(config_name: str, overrides: tuple[str, ...], finetune: bool) -> None:
    """Print the effective config (--config with --set and --finetune applied) as YAML, each
    field with what it means. The output is a valid config file for --config."""
    from persam_video.config import describe_config

    click.echo(describe_config(common.build_config(config_name, overrides, finetune)), nl=False)
