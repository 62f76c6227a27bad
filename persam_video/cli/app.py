"""``persam-video app``: the local web app (Gradio; from a checkout, ``pip install ".[app]"``).

It binds 127.0.0.1 by default and makes no public share link. Uploaded and produced files live
in one temporary folder (a folder per browser session inside it), removed when the app stops.
The model is loaded on first use, so that a model that cannot be loaded is said in the page.
"""

from __future__ import annotations

import importlib.util
import os
import socket

import click

from persam_video.cli import common
from persam_video.cli.common import (
    InputError,
    config_options,
    friendly_errors,
    model_options,
    quiet_option,
    threads_option,
)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
#: The app's model when none is named: the bundled demo model needs no download.
APP_DEFAULT_MODEL = "demo"
INSTALL_HINT = (
    'the app needs Gradio: pip install ".[app]" in a checkout of persam-video (or pip install '
    '"gradio>=6,<7")'
)
#: Gradio reads these when it is imported: its cache goes into the app's temporary folder, and
#: it sends no usage statistics.
GRADIO_TEMP_ENV, GRADIO_ANALYTICS_ENV = "GRADIO_TEMP_DIR", "GRADIO_ANALYTICS_ENABLED"
#: Ports a TCP server can bind.
MAX_PORT = 65535


@click.command("app")
@model_options(default=APP_DEFAULT_MODEL, from_targets=False)
@config_options
@click.option(
    "--host",
    default=DEFAULT_HOST,
    show_default=True,
    help="Address to bind; the default serves this machine only.",
)
@click.option(
    "--port",
    default=DEFAULT_PORT,
    show_default=True,
    type=click.IntRange(1, MAX_PORT),
    help="Port to serve on.",
)
@click.option(
    "--max-upload-mb",
    default=None,
    type=click.FloatRange(min=0, min_open=True),
    help="Largest video upload, in MiB. [default: 500]",
)
@quiet_option
@threads_option
@friendly_errors
def app_command(
    model_name: str | None,
    checkpoint: str | None,
    device: str,
    config_name: str,
    overrides: tuple[str, ...],
    finetune: bool,
    host: str,
    port: int,
    max_upload_mb: float | None,
    quiet: bool,
    threads: int,
) -> None:
    """Open a local web app: upload a video, click on objects, track, correct, download.

    The downloads (masks as a zip of DAVIS palette PNGs, overlay, masked video, results.json,
    report, target files) are the files 'persam-video track' writes for the same prompts; the
    page shows that command. Stop the app with Ctrl-C.
    """
    from persam_video.apps.app_state import (
        DEFAULT_MAX_UPLOAD_MB,
        AppError,
        AppSessions,
        AppSettings,
        ModelHolder,
        app_folder,
    )

    if not gradio_installed():
        raise InputError(INSTALL_HINT)
    model = common.check_model_name(model_name or APP_DEFAULT_MODEL, memory=True)
    config = common.build_config(config_name, overrides, finetune, model)
    config_args = _config_args(config_name, overrides, finetune)
    limit = DEFAULT_MAX_UPLOAD_MB if max_upload_mb is None else max_upload_mb
    settings = AppSettings(
        model_name=model,
        checkpoint=checkpoint,
        device=device,
        config=config,
        max_upload_mb=limit,
        threads=threads,
        config_args=config_args,
    )
    check_port_free(host, port)
    common.say_model_warning(model, now=True)
    models = ModelHolder(settings)
    try:  # a model that cannot load is said now, not at the first click in the page
        models.get()
    except AppError as exc:
        raise InputError(str(exc)) from None
    root = app_folder()
    os.environ[GRADIO_TEMP_ENV] = os.path.join(root, "gradio")
    os.environ.setdefault(GRADIO_ANALYTICS_ENV, "False")
    sessions = AppSessions(models, root)
    try:
        from persam_video.apps.webapp import serve

        if not quiet:
            click.echo(f"persam-video app on http://{host}:{port} (model {model}); Ctrl-C stops it")
        serve(sessions, host=host, port=port, max_upload_mb=limit, quiet=quiet)
    finally:
        sessions.close()


def check_port_free(host: str, port: int) -> None:
    """Refuse (one line) a port another program already listens on, before anything starts."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise InputError(
                f"cannot listen on {host}:{port} ({exc.strerror}): choose another --port"
            ) from None


def gradio_installed() -> bool:
    """Whether Gradio can be imported (without importing it)."""
    return importlib.util.find_spec("gradio") is not None


def _config_args(config_name: str, overrides: tuple[str, ...], finetune: bool) -> tuple[str, ...]:
    """The config options as given, for the page's equivalent command line."""
    words: list[str] = [] if config_name == "default" else ["--config", config_name]
    for override in overrides:
        words += ["--set", override]
    return (*words, "--finetune") if finetune else tuple(words)
