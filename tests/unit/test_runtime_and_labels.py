"""Thread choice, fragmented-mask warnings, mask sources, file modes, the overlay legend, and the
config description (pure functions on constructed inputs)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import yaml
from PIL import Image

from persam_video import runtime
from persam_video.apps.visualize import draw_legend, object_color, overlay
from persam_video.atomic import atomic_file, file_mode, write_text
from persam_video.config import PerSAMConfig, describe_config, field_docs, valid_keys
from persam_video.io import read_mask_sources
from persam_video.labels import fragmentation_warning


@pytest.mark.parametrize(
    "cpus,load,expected",
    [(2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1), (2, 1.2, 1), (2, 7.0, 1), (16, 3.2, 13)],
)
def test_auto_threads_leave_the_busy_cores_alone(monkeypatch, cpus, load, expected):
    monkeypatch.delenv(runtime.THREADS_ENV, raising=False)
    monkeypatch.setattr(runtime, "usable_cpus", lambda: cpus)
    monkeypatch.setattr(runtime, "busy_cpus", lambda: load)
    assert runtime.choose_threads() == expected
    assert runtime.choose_threads("auto") == expected


def test_explicit_threads_and_the_environment(monkeypatch):
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 2)
    monkeypatch.setattr(runtime, "busy_cpus", lambda: 0.0)
    assert runtime.choose_threads(3) == 3
    assert runtime.choose_threads("1") == 1
    monkeypatch.setenv(runtime.THREADS_ENV, "1")
    assert runtime.choose_threads() == 1  # the variable sets the default
    assert runtime.choose_threads(2) == 2  # an explicit choice wins
    for bad in (0, -1, "two", "1.5"):
        with pytest.raises(ValueError, match="positive integer or auto"):
            runtime.choose_threads(bad)


def test_busy_cpus_counts_all_work(monkeypatch, tmp_path):
    """/proc/stat: user, nice, system, irq, softirq and steal count; idle and iowait do not."""
    samples = iter(
        [
            [100, 500, 100, 1000, 50, 0, 0, 0],
            [100 + 60, 500 + 90, 100 + 20, 1000 + 20, 50 + 10, 0, 0, 0],  # 200 ticks in all
        ]
    )
    monkeypatch.setattr(runtime, "_cpu_times", lambda: next(samples))
    monkeypatch.setattr(runtime.time, "sleep", lambda s: None)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert runtime.busy_cpus() == pytest.approx(2 * (60 + 90 + 20) / 200)  # niced work counts
    monkeypatch.setattr(runtime, "_cpu_times", lambda: None)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.5, 1.0, 0.5))
    assert runtime.busy_cpus() == 1.5  # no /proc/stat: the load average


def test_apply_threads_sets_torch_and_the_pools(monkeypatch):
    import torch

    before = torch.get_num_threads()
    for name in runtime.THREAD_POOL_ENVS:
        monkeypatch.setenv(name, "7")
    try:
        assert runtime.apply_threads(1) == 1
        assert torch.get_num_threads() == 1
        assert all(os.environ[name] == "1" for name in runtime.THREAD_POOL_ENVS)
    finally:
        torch.set_num_threads(before)


def test_fragmented_masks_are_recognized():
    clean = np.zeros((100, 100), np.uint8)
    clean[10:40, 10:40], clean[50:90, 50:90] = 1, 2
    assert fragmentation_warning(clean) is None
    few_small = clean.copy()
    few_small[0, 0], few_small[99, 99] = 3, 4  # 4 objects: too few to call it fragmented
    assert fragmentation_warning(few_small) is None
    soft = clean.copy()
    for k in range(8):  # an anti-aliased edge: many one-pixel "objects"
        soft[40, 10 + 3 * k] = 3 + k
    warning = fragmentation_warning(soft)
    assert warning is not None and "10 objects, 8 of them" in warning
    assert "anti-aliased" in warning and "\n" not in warning


def test_mask_sources_say_what_became_which_id(tmp_path):
    colours = np.zeros((20, 30, 3), np.uint8)
    colours[2:6, 2:6] = (0, 255, 0)  # first in a row-major scan: id 1
    colours[10:14, 2:6] = (255, 0, 0)
    Image.fromarray(colours).save(tmp_path / "c.png")
    labels, sources = read_mask_sources(tmp_path / "c.png")
    assert sources.kind == "colour" and sources.renumbered
    assert sources.ids == ((1, "(0, 255, 0)"), (2, "(255, 0, 0)"))
    assert sources.describe() == "(0, 255, 0) -> 1, (255, 0, 0) -> 2"
    assert labels[3, 3] == 1 and labels[11, 3] == 2
    gray = np.zeros((20, 30), np.uint8)
    gray[2:6, 2:6], gray[10:14, 2:6] = 128, 255
    Image.fromarray(gray).save(tmp_path / "g.png")
    _, sources = read_mask_sources(tmp_path / "g.png")
    assert sources.kind == "gray" and sources.ids == ((1, "128"), (2, "255"))
    assert sources.renumbered
    ids = np.zeros((20, 30), np.uint8)
    ids[2:6, 2:6], ids[10:14, 2:6] = 1, 2
    Image.fromarray(ids).save(tmp_path / "i.png")
    assert not read_mask_sources(tmp_path / "i.png")[1].renumbered  # ids kept as they were


def test_atomic_files_get_the_usual_mode(tmp_path):
    old = os.umask(0o022)
    try:
        assert file_mode() == 0o644
        with atomic_file(tmp_path / "private.bin") as tmp:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)  # as safetensors writes
            os.write(fd, b"x")
            os.close(fd)
        assert (tmp_path / "private.bin").stat().st_mode & 0o777 == 0o644
        write_text(tmp_path / "a.txt", "x")
        assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)


def test_the_legend_shows_each_object_colour():
    frame = np.full((120, 160, 3), 200, np.uint8)
    labels = np.zeros((120, 160), np.uint8)
    labels[60:100, 60:100], labels[60:100, 110:150] = 1, 7
    plain = overlay(frame, labels)
    with_legend = overlay(frame, labels, legend=[1, 7])
    assert (plain[:4, :4] == 200).all()  # no legend asked: the corner is the frame
    # Each row starts with a swatch of the object's own colour.
    colours = {tuple(int(v) for v in with_legend[y, x]) for y in range(0, 40) for x in range(6)}
    assert object_color(1) in colours and object_color(7) in colours
    blank = np.zeros((120, 160, 3), np.uint8)
    draw_legend(blank, [3])
    assert object_color(3) in {tuple(int(v) for v in p) for p in blank[:20, :10].reshape(-1, 3)}


def test_config_description_documents_every_field_and_reads_back(tmp_path):
    docs = field_docs()
    assert set(docs) == set(valid_keys()) and all(docs.values())
    config = PerSAMConfig.paper_video().with_overrides(["track.momentum=0.5"])
    text = describe_config(config)
    assert text.count("  # ") >= len(valid_keys())
    assert PerSAMConfig.from_dict(yaml.safe_load(text)) == config


THREADS_PROBE = """
import os, sys, torch
for name in ("PERSAM_VIDEO_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.pop(name, None)
torch.set_num_threads(int(sys.argv[1]))
from persam_video import runtime
if sys.argv[2] == "chosen":
    runtime.apply_threads(3)
from persam_video.model import build_sam_from_spec, tiny_sam_spec
from persam_video.persam.encoder import FrameEncoder
FrameEncoder(build_sam_from_spec(tiny_sam_spec(), seed=0))
print(torch.get_num_threads(), runtime.choose_threads("auto"))
"""


@pytest.mark.parametrize(("before", "how"), [(512, "torch"), (1, "torch"), (512, "chosen")])
def test_the_python_api_applies_the_command_lines_thread_rule(before, how):
    import subprocess
    import sys

    chosen = ("PERSAM_VIDEO_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    env = {k: v for k, v in os.environ.items() if k not in chosen}
    probe = [sys.executable, "-c", THREADS_PROBE, str(before), how]
    done = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=120, check=True)
    threads, auto = (int(v) for v in done.stdout.split())
    if how == "chosen":
        assert threads == 3  # apply_threads before: left as chosen
    elif before == 1:
        assert threads == 1  # fewer than the rule gives: the caller's choice stays
    else:
        assert threads == auto <= os.cpu_count()  # torch's many threads cut to the rule's
