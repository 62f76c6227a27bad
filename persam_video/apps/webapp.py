"""The page of ``persam-video app``: a Gradio layout over :mod:`persam_video.apps.app_state`.

Every handler here only translates between the page and an :class:`AppSession` (one per browser
session, found by Gradio's session id); the logic and its tests live in ``app_state``. An
:class:`~persam_video.apps.app_state.AppError` becomes a notice in the page (``gr.Warning``; the
outputs keep what they showed, with no error badge, and a failed upload leaves its field empty),
an unexpected exception an error message (its traceback goes to the server's standard error):
the server keeps running.

This module imports Gradio (from a checkout, ``pip install ".[app]"``); ``persam-video app`` imports
it only when the command runs.
"""

from __future__ import annotations

import functools
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from persam_video.apps.app_state import (
    BYTES_PER_MB,
    CLICK_MODES,
    MASKED_CHOICES,
    POSITIVE,
    AppError,
    AppSession,
    AppSessions,
    Cancelled,
)
from persam_video.video.session import DIRECTIONS

TITLE = "persam-video"
#: Element ids the browser test finds.
UPLOAD_ID, PATH_ID, OPEN_ID = "video-upload", "video-path", "open-path"
FRAME_ID, SLIDER_ID, STATUS_ID = "frame-view", "frame-slider", "status"
OBJECT_ID, MODE_ID, COMMAND_ID = "object-id", "click-mode", "command"
TRACK_ID, CANCEL_ID, OVERLAY_ID, DOWNLOADS_ID = "track", "cancel", "overlay-video", "downloads"
TARGET_BUTTON_ID, TARGET_FILE_ID = "save-target", "target-file"
#: Height of the frame view and the overlay player, in CSS pixels.
VIEW_HEIGHT_PX = 420
#: All handlers that run the model share one queue (one model, one computation at a time).
MODEL_QUEUE = "model"

INTRO = (
    "Open a video, scrub to a frame, click on an object (or draw a box with two clicks): SAM's "
    "mask shows at once. Track, watch the overlay, correct on any frame and track again. The "
    "downloads are the files `persam-video track` writes for the same prompts (the command is "
    "below)."
)


def _shown(func: Callable[..., Any]) -> Callable[..., Any]:
    """Errors as messages in the page (a notice; the outputs keep what they showed); the server
    keeps running."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (AppError, Cancelled) as exc:
            # a message, and every output left as it was: raising would leave an empty red
            # "Error" badge on each output component
            gr.Warning(str(exc) if isinstance(exc, AppError) else "tracking cancelled")
            return gr.skip()
        except gr.Error:
            raise
        except Exception as exc:  # a bug: said in the page, logged here, the server goes on
            traceback.print_exc(file=sys.stderr)
            raise gr.Error(f"internal error: {exc}", print_exception=False) from None

    return wrapper


def _describe_prompts(session: AppSession) -> str:
    """The prompts so far, per object and frame."""
    if not session.clicks:
        return "No prompt yet: click on an object in the frame."
    lines = []
    for obj_id in session.prompted_objects():
        frames = sorted({s.frame for s in session.clicks if s.obj_id == obj_id})
        parts = []
        for frame in frames:
            kinds = [s.kind for s in session.clicks if (s.obj_id, s.frame) == (obj_id, frame)]
            clicks = sum(k != "box" for k in kinds)
            box = " + box" if "box" in kinds else ""
            parts.append(f"frame {frame} ({clicks} click{'s' if clicks != 1 else ''}{box})")
        lines.append(f"- object {obj_id}: {', '.join(parts)}")
    return "\n".join(lines)


def build_app(sessions: AppSessions) -> gr.Blocks:
    """The page, its handlers bound to ``sessions``."""

    def session_of(request: gr.Request) -> AppSession:
        return sessions.get(request.session_hash or "local")

    def opened(session: AppSession) -> tuple[Any, ...]:
        info = session.video
        assert info is not None
        last = max(info.num_frames - 1, 0)
        return (
            session.shown(0),
            gr.Slider(minimum=0, maximum=last, value=0, step=1, interactive=True),
            f"**{info.describe()}**",
            _describe_prompts(session),
            session.command(),
            None,
            None,
            None,
        )

    @_shown
    def on_upload(file: str | None, request: gr.Request) -> tuple[Any, ...]:
        if file is None:
            raise AppError("choose a video file to upload")
        session = session_of(request)
        try:
            session.open_upload(file, name=Path(file).name)
        except AppError as exc:  # the failed file's name does not stay in the upload field
            gr.Warning(str(exc))
            return (None, *[gr.skip()] * len(opened_outputs))
        return (gr.skip(), *opened(session))

    @_shown
    def on_open_path(text: str, request: gr.Request) -> tuple[Any, ...]:
        session = session_of(request)
        session.open_path(text)
        return opened(session)

    @_shown
    def on_scrub(frame: float, request: gr.Request) -> np.ndarray | None:
        session = session_of(request)
        if session.video is None:
            return None
        return session.shown(int(frame))

    @_shown
    def on_click(
        frame: float,
        obj_id: float,
        mode: str,
        direction: str,
        masked: str,
        evt: gr.SelectData,
        request: gr.Request,
    ) -> tuple[Any, ...]:
        session = session_of(request)
        if evt.index is None or len(evt.index) != 2:
            raise AppError("click on the frame itself")
        x, y = (int(v) for v in evt.index)
        said = session.click_shown(int(frame), obj_id, mode, x, y)
        gr.Info(said)
        return (
            session.shown(int(frame)),
            _describe_prompts(session),
            session.command(direction, masked),
        )

    @_shown
    def on_undo(
        frame: float, obj_id: float, direction: str, masked: str, request: gr.Request
    ) -> tuple[Any, ...]:
        session = session_of(request)
        gr.Info(session.undo(int(frame), obj_id))
        return (
            session.shown(int(frame)),
            _describe_prompts(session),
            session.command(direction, masked),
        )

    @_shown
    def on_clear(
        frame: float, obj_id: float, direction: str, masked: str, request: gr.Request
    ) -> tuple[Any, ...]:
        session = session_of(request)
        gr.Info(session.clear(int(frame), obj_id))
        return (
            session.shown(int(frame)),
            _describe_prompts(session),
            session.command(direction, masked),
        )

    @_shown
    def on_new_object(request: gr.Request) -> int:
        return session_of(request).next_object_id()

    @_shown
    def on_options(direction: str, masked: str, request: gr.Request) -> str:
        return session_of(request).command(direction, masked)

    @_shown
    def on_track(
        direction: str,
        masked: str,
        frame: float,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio's way to ask for a bar
    ) -> tuple[Any, ...]:
        session = session_of(request)
        progress(0.0, desc="starting")
        run = session.track(
            direction, masked, on_progress=lambda done, what: progress(done, desc=what)
        )
        summary = run.summary
        gr.Info(
            f"tracked {len(summary.object_ids)} object(s) through {summary.frames} frames in "
            f"{summary.seconds:.1f} s"
        )
        return (
            str(run.overlay) if run.overlay is not None else None,
            [str(p) for p in run.downloads()],
            session.shown(int(frame)),
        )

    @_shown
    def on_cancel(request: gr.Request) -> None:
        if session_of(request).cancel():
            gr.Warning("tracking cancelled")

    @_shown
    def on_save_target(obj_id: float, request: gr.Request) -> str:
        return str(session_of(request).save_target(obj_id))

    def on_unload(request: gr.Request) -> None:
        sessions.drop(request.session_hash or "local")

    with gr.Blocks(title=TITLE, analytics_enabled=False) as app:
        gr.Markdown(f"# {TITLE}\n{INTRO}\n\n{sessions.models.settings.describe_model()}")
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                upload = gr.File(
                    label="Video file", type="filepath", elem_id=UPLOAD_ID, file_count="single"
                )
                with gr.Row():
                    path = gr.Textbox(
                        label="or a path on this machine",
                        elem_id=PATH_ID,
                        placeholder="/path/to/clip.mp4",
                        scale=3,
                    )
                    open_button = gr.Button("Open", elem_id=OPEN_ID, scale=1)
                info = gr.Markdown("No video open.")
                mode = gr.Radio(
                    list(CLICK_MODES), value=POSITIVE, label="A click on the frame", elem_id=MODE_ID
                )
                with gr.Row():
                    obj = gr.Number(
                        value=1,
                        precision=0,
                        minimum=1,
                        maximum=254,
                        label="Object id",
                        elem_id=OBJECT_ID,
                        scale=2,
                    )
                    new_object = gr.Button("New object", scale=1)
                with gr.Row():
                    undo = gr.Button("Undo last click")
                    clear = gr.Button("Clear object on this frame")
                prompts = gr.Markdown("No prompt yet.", elem_id=STATUS_ID)
            with gr.Column(scale=2):
                view = gr.Image(
                    label="Frame (click to prompt)",
                    type="numpy",
                    format="png",
                    interactive=False,
                    elem_id=FRAME_ID,
                    height=VIEW_HEIGHT_PX,
                    buttons=[],
                )
                slider = gr.Slider(
                    0, 1, value=0, step=1, label="Frame", interactive=False, elem_id=SLIDER_ID
                )
        with gr.Row():
            direction = gr.Dropdown(list(DIRECTIONS), value="both", label="Direction")
            masked = gr.Dropdown(list(MASKED_CHOICES), value="none", label="Masked video")
            track = gr.Button("Track", variant="primary", elem_id=TRACK_ID)
            cancel = gr.Button("Cancel", variant="stop", elem_id=CANCEL_ID)
        command = gr.Textbox(
            label="The same run on the command line", interactive=False, elem_id=COMMAND_ID
        )
        with gr.Row():
            overlay_video = gr.Video(
                label="Overlay", interactive=False, elem_id=OVERLAY_ID, height=VIEW_HEIGHT_PX
            )
            with gr.Column():
                downloads = gr.File(
                    label="Downloads",
                    file_count="multiple",
                    interactive=False,
                    elem_id=DOWNLOADS_ID,
                )
                save_target = gr.Button("Save a target of this object", elem_id=TARGET_BUTTON_ID)
                target_file = gr.File(
                    label="Target file", interactive=False, elem_id=TARGET_FILE_ID
                )

        opened_outputs = [
            view,
            slider,
            info,
            prompts,
            command,
            overlay_video,
            downloads,
            target_file,
        ]
        # opening a video runs no model: one session's open never waits for another's
        upload.upload(on_upload, [upload], [upload, *opened_outputs], concurrency_limit=None)
        open_button.click(on_open_path, [path], opened_outputs, concurrency_limit=None)
        path.submit(on_open_path, [path], opened_outputs, concurrency_limit=None)
        slider.change(
            on_scrub, [slider], [view], trigger_mode="always_last", show_progress="hidden"
        )
        prompt_outputs = [view, prompts, command]
        view.select(
            on_click,
            [slider, obj, mode, direction, masked],
            prompt_outputs,
            concurrency_id=MODEL_QUEUE,
        )
        undo.click(
            on_undo, [slider, obj, direction, masked], prompt_outputs, concurrency_id=MODEL_QUEUE
        )
        clear.click(
            on_clear, [slider, obj, direction, masked], prompt_outputs, concurrency_id=MODEL_QUEUE
        )
        new_object.click(on_new_object, None, [obj])
        direction.change(on_options, [direction, masked], [command])
        masked.change(on_options, [direction, masked], [command])
        tracking = track.click(
            on_track,
            [direction, masked, slider],
            [overlay_video, downloads, view],
            concurrency_id=MODEL_QUEUE,
            show_progress_on=[overlay_video],
        )
        cancel.click(on_cancel, None, None, cancels=[tracking], concurrency_limit=None)
        save_target.click(on_save_target, [obj], [target_file], concurrency_id=MODEL_QUEUE)
        app.unload(on_unload)
    return app


def serve(
    sessions: AppSessions,
    *,
    host: str,
    port: int,
    max_upload_mb: float,
    quiet: bool = False,
) -> None:
    """Build the page and serve it until interrupted (no public share link); ``sessions``'
    folder is among the paths the page may serve."""
    app = build_app(sessions)
    app.queue(default_concurrency_limit=1)
    app.launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        quiet=quiet,
        max_file_size=int(max_upload_mb * BYTES_PER_MB),
        allowed_paths=[str(sessions.root)],
        ssr_mode=False,
        footer_links=[],
        show_error=True,
    )
