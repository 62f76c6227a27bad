"""``persam-video app`` on the command line: one-line errors (exit 2) before anything starts,
Gradio missing, the defaults it serves with (127.0.0.1, no share link), and its temporary
folder removed when it stops."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from persam_video.cli import cli

app_module = importlib.import_module("persam_video.cli.app")


def run(*args: str):
    return CliRunner().invoke(cli, ["app", *args])


def one_line_error(result, text: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], result.output


def test_without_gradio_it_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(app_module, "gradio_installed", lambda: False)
    one_line_error(run(), 'pip install ".[app]" in a checkout of persam-video')


def test_a_model_that_cannot_load_is_said_before_the_page_starts(monkeypatch, tmp_path):
    pytest.importorskip("gradio")
    from persam_video.apps import webapp

    monkeypatch.setattr(webapp, "serve", lambda *a, **k: pytest.fail("the page started"))
    missing = tmp_path / "sam_vit_b.pth"
    one_line_error(run("--model", "vit_b", "--checkpoint", str(missing)), "cannot load the model")


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (("--model", "vit_q"), "unknown model 'vit_q'"),
        (("--port", "0"), "--port"),
        (("--max-upload-mb", "0"), "--max-upload-mb"),
        (("--set", "track.nope=1"), "track.nope"),
    ],
)
def test_bad_options_are_one_line(monkeypatch, args, text):
    monkeypatch.setattr(app_module, "gradio_installed", lambda: True)
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert text in result.output


def test_it_serves_127_0_0_1_with_the_settings_given_and_cleans_up(monkeypatch):
    pytest.importorskip("gradio")
    from persam_video.apps import webapp

    seen = {}

    def fake_serve(sessions, *, host, port, max_upload_mb, quiet):
        seen.update(
            host=host,
            port=port,
            limit=max_upload_mb,
            root=sessions.root,
            settings=sessions.models.settings,
        )
        assert sessions.root.is_dir()
        (sessions.root / "left.txt").write_text("an upload")

    monkeypatch.setattr(webapp, "serve", fake_serve)
    monkeypatch.setenv("GRADIO_TEMP_DIR", "")
    result = run("--model", "demo", "--max-upload-mb", "12.5", "--set", "track.momentum=0.8", "-q")
    assert result.exit_code == 0, result.output
    assert (seen["host"], seen["port"], seen["limit"]) == ("127.0.0.1", 7860, 12.5)
    assert seen["settings"].config.track.momentum == 0.8
    assert seen["settings"].config_args == ("--set", "track.momentum=0.8")
    assert not Path(seen["root"]).exists()  # removed when the app stops


def test_the_page_builds_with_the_ids_the_browser_test_uses(tmp_path):
    pytest.importorskip("gradio")
    from persam_video.apps import webapp
    from persam_video.apps.app_state import AppSessions, AppSettings, ModelHolder

    sessions = AppSessions(ModelHolder(AppSettings()), tmp_path / "root")
    page = webapp.build_app(sessions)
    ids = {block.elem_id for block in page.blocks.values() if getattr(block, "elem_id", None)}
    assert {
        webapp.UPLOAD_ID,
        webapp.FRAME_ID,
        webapp.TRACK_ID,
        webapp.CANCEL_ID,
        webapp.OVERLAY_ID,
        webapp.DOWNLOADS_ID,
        webapp.COMMAND_ID,
    } <= ids
    sessions.close()
