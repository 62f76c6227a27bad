"""Checkpoint registry, verified downloads (local HTTP server and file URLs) and load_sam."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from functools import partial
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from persam_video import load_sam
from persam_video.cli import cli
from persam_video.model import checkpoints as W
from persam_video.model.registry import describe_state_dict
from persam_video.model.spec import build_sam_from_spec, tiny_sam_spec

PAYLOAD = b"not really a checkpoint, but bytes with a known hash\n" * 1000


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(W.CACHE_ENV, str(folder))
    return folder


@pytest.fixture
def server(tmp_path):
    """A loopback HTTP server serving tmp_path/www; yields its base URL."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "fake.pth").write_bytes(PAYLOAD)
    handler = partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def fake_entry(url: str, payload: bytes = PAYLOAD) -> W.Checkpoint:
    return W.Checkpoint("vit_b", url, len(payload), hashlib.sha256(payload).hexdigest())


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/sam_vit_b_01ec64.pth"


def test_registry_facts():
    assert W.CHECKPOINTS["vit_b"].size == 375_042_383
    assert W.CHECKPOINTS["vit_h"].sha256.startswith("a7bf3b02")
    assert W.CHECKPOINTS["vit_l"].filename == "sam_vit_l_0b3195.pth"
    with pytest.raises(W.WeightsError, match="known: vit_h, vit_l, vit_b"):
        W.get_checkpoint("vit_x")


def test_cache_dir_follows_environment(cache):
    assert W.cache_dir() == cache
    assert W.checkpoint_path("vit_b") == cache / "sam_vit_b_01ec64.pth"


def test_download_over_http_is_verified_and_cached(cache, server, monkeypatch):
    monkeypatch.setitem(W.CHECKPOINTS, "vit_b", fake_entry(f"{server}/fake.pth"))
    path = W.ensure_checkpoint("vit_b", progress=False)
    assert path == cache / "fake.pth"
    assert path.read_bytes() == PAYLOAD
    assert [p.name for p in cache.iterdir()] == ["fake.pth"]  # no temporary file left
    # A second call does not download again (the URL is now dead).
    monkeypatch.setitem(W.CHECKPOINTS, "vit_b", fake_entry(f"{server}/gone.pth"))
    monkeypatch.setattr(W.Checkpoint, "filename", property(lambda self: "fake.pth"))
    assert W.ensure_checkpoint("vit_b", progress=False) == path


def test_download_from_file_url(cache, tmp_path, monkeypatch):
    source = tmp_path / "local.pth"
    source.write_bytes(PAYLOAD)
    monkeypatch.setitem(W.CHECKPOINTS, "vit_b", fake_entry(source.as_uri()))
    assert W.ensure_checkpoint("vit_b", progress=False).read_bytes() == PAYLOAD


def test_corrupt_download_leaves_nothing(cache, server, monkeypatch):
    wrong = W.Checkpoint("vit_b", f"{server}/fake.pth", len(PAYLOAD), "0" * 64)
    monkeypatch.setitem(W.CHECKPOINTS, "vit_b", wrong)
    with pytest.raises(W.WeightsError, match="corrupt"):
        W.ensure_checkpoint("vit_b", progress=False)
    assert list(cache.iterdir()) == []


def test_offline_download_says_what_to_do(cache, monkeypatch):
    entry = W.CHECKPOINTS["vit_b"]
    monkeypatch.setitem(
        W.CHECKPOINTS, "vit_b", W.Checkpoint("vit_b", closed_port_url(), entry.size, entry.sha256)
    )
    with pytest.raises(W.WeightsError) as info:
        W.ensure_checkpoint("vit_b", progress=False)
    message = str(info.value)
    assert "\n" not in message
    assert "save it as" in message and str(cache / "sam_vit_b_01ec64.pth") in message
    assert "--checkpoint" in message
    assert list(cache.iterdir()) == []


def test_cli_weights_commands(cache, monkeypatch):
    runner = CliRunner()
    listing = runner.invoke(cli, ["weights", "list"])
    assert listing.exit_code == 0
    assert "vit_h" in listing.output and "not cached" in listing.output
    path = runner.invoke(cli, ["weights", "path", "vit_l"])
    assert path.output.strip() == str(cache / "sam_vit_l_0b3195.pth")
    entry = W.CHECKPOINTS["vit_b"]
    monkeypatch.setitem(
        W.CHECKPOINTS, "vit_b", W.Checkpoint("vit_b", closed_port_url(), entry.size, entry.sha256)
    )
    failed = runner.invoke(cli, ["weights", "download", "vit_b", "-q"])
    assert failed.exit_code == 2
    assert failed.output.startswith("error: cannot download the vit_b checkpoint")
    assert "Traceback" not in failed.output and failed.output.count("\n") == 1
    unknown = runner.invoke(cli, ["weights", "path", "vit_q"])
    assert unknown.exit_code == 2 and "unknown SAM checkpoint 'vit_q'" in unknown.output


def test_load_sam_from_local_vit_b_checkpoint(tmp_path):
    from segment_anything import sam_model_registry

    reference = sam_model_registry["vit_b"](checkpoint=None)
    path = tmp_path / "my_vit_b.pth"
    torch.save(reference.state_dict(), path)
    sam = load_sam("vit_b", checkpoint=path, device="cpu")
    assert not sam.training
    name, value = next(iter(reference.state_dict().items()))
    assert torch.equal(sam.state_dict()[name], value)
    with pytest.raises(W.WeightsError, match=r"not a vit_h SAM checkpoint.*looks like vit_b"):
        load_sam("vit_h", checkpoint=path, device="cpu")


def test_load_sam_refuses_bad_files(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(W.WeightsError, match="not a loadable PyTorch checkpoint"):
        load_sam("vit_b", checkpoint=text, device="cpu")
    with pytest.raises(W.WeightsError, match="does not exist"):
        load_sam("vit_b", checkpoint=tmp_path / "missing.pth", device="cpu")
    tiny = tmp_path / "tiny.pth"
    torch.save(build_sam_from_spec(tiny_sam_spec()).state_dict(), tiny)
    with pytest.raises(W.WeightsError, match="encoder width 32 and depth 2"):
        load_sam("vit_b", checkpoint=tiny, device="cpu")
    # Arbitrary pickled objects are never unpickled (weights_only=True).
    evil = tmp_path / "evil.pth"
    torch.save({"model": _Evil()}, evil)
    with pytest.raises(W.WeightsError, match="not a loadable PyTorch checkpoint"):
        load_sam("vit_b", checkpoint=evil, device="cpu")
    # A file of an official size is checked against the official hash.
    sized = tmp_path / "sized.pth"
    with open(sized, "wb") as f:
        f.truncate(W.CHECKPOINTS["vit_b"].size)
    with pytest.raises(W.WeightsError, match="SHA-256"):
        load_sam("vit_b", checkpoint=sized, device="cpu")
    with pytest.raises(W.WeightsError, match="unknown model 'vit_z'"):
        load_sam("vit_z", device="cpu")
    with pytest.raises(ValueError, match="unknown device"):
        load_sam("vit_b", device="gpu0")


class _Evil:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/persam-video-should-not-exist"),))


def test_describe_state_dict():
    assert describe_state_dict({}) == "not a SAM state dict"
    state = build_sam_from_spec(tiny_sam_spec(encoder_dim=32, encoder_depth=3)).state_dict()
    assert describe_state_dict(state) == "a SAM with encoder width 32 and depth 3"


def test_weights_list_answers_without_loading_torch():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from persam_video.cli import cli\n"
        "result = CliRunner().invoke(cli, ['weights', 'list'])\n"
        "assert result.exit_code == 0 and 'vit_b' in result.output, result.output\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
