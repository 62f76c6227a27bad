"""``persam-video find`` on a generated archive: spans against the ground truth, failures
isolated, reports, resume after SIGKILL, and bad input refused before anything is written.

The archive: six clips, two holding the target (procedural clip seed 1, one object) between
scene cuts to other procedural scenes, three without it, one corrupt. The target is
personalized with the bundled demo model on frame 0 of the target's scene, a frame that is in
no clip of the archive.

The demo model is small and knows only procedural scenes: on many other procedural scenes its
similarity to a target reaches the similarity of the target itself (0.85-0.93 for unrelated
objects), so it would "find" the target there. The other scenes here (seeds in
``OTHER_SEEDS``) were chosen for a clear margin, measured with the default config: the target's
frames have a peak similarity of 0.92-0.97, the other scenes' at most 0.46.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from persam_video import PerSAM, PerSAMConfig
from persam_video.apps.find import find_spans
from persam_video.apps.target_file import save_target
from persam_video.atomic import MANIFEST_NAME
from persam_video.cli import cli
from persam_video.config import SpanRules
from persam_video.io import VideoWriter
from persam_video.model import load_sam, model_metadata
from persam_video.persam import Target
from persam_video.synthetic import make_clip
from tests.helpers import REPO_ROOT
from tests.helpers import entries as folder_entries

SIZE = (120, 160)
FPS = 24
TARGET_SEED = 1
OTHER_SEEDS = (1017, 1027, 1023, 1002, 1006)
#: Spans found must start and end within this many frames of the truth.
TOLERANCE_FRAMES = 2
CLIPS_WITH_TARGET = ("hit_a", "hit_b")
CLIPS_WITHOUT = ("clean_c", "clean_d", "clean_e")
RAW_RUNS = SpanRules(max_gap=0, min_frames=1)


def write_video(path: Path, frames: list[np.ndarray]) -> None:
    with VideoWriter(path, fps=FPS, size_hw=SIZE) as writer:
        for frame in frames:
            writer.write(frame)


def write_folder(path: Path, frames: list[np.ndarray]) -> None:
    path.mkdir()
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(path / f"{index:05d}.png")


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """The archive folder, the target file, and per clip the truth: whether the target's ground
    truth mask is non-empty on each frame."""
    root = tmp_path_factory.mktemp("find")
    scene = make_clip(TARGET_SEED, n_frames=40, size_hw=SIZE, n_objects=1)
    others = [make_clip(seed, n_frames=16, size_hw=SIZE, n_objects=1) for seed in OTHER_SEEDS]
    has = [bool((labels == 1).any()) for labels in scene.labels]
    folder = root / "archive"
    folder.mkdir()
    truth = {}
    # hit_a: a scene cut into the target's scene and back out (video file).
    write_video(
        folder / "hit_a.mp4", others[0].frames[:6] + scene.frames[10:22] + others[0].frames[6:12]
    )
    truth["hit_a"] = [False] * 6 + has[10:22] + [False] * 6
    # hit_b: the target, another scene, the target again (a folder of frames).
    write_folder(folder / "hit_b", scene.frames[22:30] + others[1].frames[:8] + scene.frames[30:38])
    truth["hit_b"] = has[22:30] + [False] * 8 + has[30:38]
    for name, clip in zip(CLIPS_WITHOUT, others[2:], strict=True):
        write_video(folder / f"{name}.mp4", clip.frames)
        truth[name] = [False] * len(clip.frames)
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video at all")
    (folder / "notes.txt").write_text("not a clip")
    sam = load_sam("demo", device="cpu", progress=False)
    config = PerSAMConfig.default()
    target = PerSAM(sam, config).personalize(scene.frames[0], scene.labels[0] == 1)
    target_path = save_target(
        root / "cat.target", target, model=model_metadata("demo"), config=config, shots=1
    )
    return root, folder, target_path, truth


def find(*args: str):
    return CliRunner().invoke(cli, ["find", *args, "--model", "demo", "-q"])


@pytest.fixture(scope="module")
def first_run(archive):
    root, folder, target, _ = archive
    out = root / "out"
    result = find(str(folder), "--target", str(target), "--out", str(out))
    return out, result


def test_find_spans_match_the_truth_and_failures_are_isolated(archive, first_run):
    _, _, _, truth = archive
    out, result = first_run
    assert result.exit_code == 1, result.output
    assert "5 done, 0 already done, 1 failed" in result.output
    assert "targets found in 2 of 5 clips" in result.output
    found = json.loads((out / "found.json").read_text())
    assert found["format"] == "persam-video found" and list(found["targets"]) == ["cat"]
    assert [c["name"] for c in found["clips"]] == [
        "clean_c",
        "clean_d",
        "clean_e",
        "hit_a",
        "hit_b",
    ]
    assert [f["name"] for f in found["failures"]] == ["broken"] and found["failures"][0]["reason"]
    failures = [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines()]
    assert [f["name"] for f in failures] == ["broken"]
    errors = []
    for clip in found["clips"]:
        expected = find_spans(truth[clip["name"]], rules=RAW_RUNS)
        spans = clip["targets"]["cat"]
        assert len(spans) == len(expected), (clip["name"], spans, expected)
        for span, true in zip(spans, expected, strict=True):
            errors += [span["start_frame"] - true.start_frame, span["end_frame"] - true.end_frame]
            assert true.start_frame <= span["best_frame"] <= true.end_frame
            assert span["start_s"] == pytest.approx(span["start_frame"] / FPS, abs=1e-3)
            assert span["end_s"] == pytest.approx(span["end_frame"] / FPS, abs=1e-3)
            assert (out / span["thumbnail"]).is_file()
    print(f"span boundary errors, found - truth, in frames: {errors}")  # shown with -s
    assert errors and max(abs(e) for e in errors) <= TOLERANCE_FRAMES, errors
    assert sum(len(c["targets"]["cat"]) for c in found["clips"]) == 3
    for name in CLIPS_WITH_TARGET + CLIPS_WITHOUT:  # a search writes no masks and no videos
        entries = set(folder_entries(out / name))
        assert entries <= {"results.json", "done.json", "thumbnails"}, entries
    assert not (out / "broken").exists()
    assert not [p for p in out.rglob(".*") if p.name != MANIFEST_NAME], "temporaries or a lock"


def test_reports_csv_and_self_contained_html(first_run):
    out, _ = first_run
    found = json.loads((out / "found.json").read_text())
    with open(out / "found.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["clip"], r["target"]) for r in rows] == [
        ("hit_a", "cat"),
        ("hit_b", "cat"),
        ("hit_b", "cat"),
    ]
    spans = [s for c in found["clips"] for s in c["targets"]["cat"]]
    assert [int(r["start_frame"]) for r in rows] == [s["start_frame"] for s in spans]
    assert [r["thumbnail"] for r in rows] == [s["thumbnail"] for s in spans]
    page = (out / "found.html").read_text()
    checker = HtmlChecker()
    checker.feed(page)
    checker.close()
    assert checker.open == [] and checker.problems == []
    assert len(checker.images) == 3 and all(
        s.startswith("data:image/jpeg;base64,") for s in checker.images
    )
    assert "http://" not in page and "https://" not in page and "<script" not in page
    order = [page.index(f"<td>{name}</td>") for name in ("clean_c", "hit_a", "hit_b")]
    assert order == sorted(order) and "broken" in page
    searched, failed = len(found["clips"]) + len(found["failures"]), len(found["failures"])
    assert failed and f"<p>{searched} clips searched, {failed} failed;" in page


def test_rerun_skips_finished_clips_and_rebuilds_the_same_reports(archive, first_run):
    _, folder, target, _ = archive
    out, _ = first_run
    before = (out / "found.json").read_text()
    again = find(str(folder), "--target", str(target), "--out", str(out))
    assert again.exit_code == 1
    assert "0 done, 5 already done, 1 failed" in again.output
    assert (out / "found.json").read_text() == before
    other_rules = find(str(folder), "--target", str(target), "--out", str(out), "--max-gap", "5")
    assert other_rules.exit_code == 2 and "another run (different spans)" in other_rules.output


def test_manifest_input_and_save_masks(tmp_path, archive):
    _, folder, target, truth = archive
    manifest = tmp_path / "clips.csv"
    manifest.write_text(f"input,name\n{folder / 'hit_a.mp4'},first\n")
    out = tmp_path / "out"
    result = find(str(manifest), "--target", str(target), "--out", str(out), "--save-masks")
    assert result.exit_code == 0, result.output
    masks = sorted((out / "first" / "masks").iterdir())
    assert len(masks) == len(truth["hit_a"])
    found = json.loads((out / "found.json").read_text())
    (span,) = found["clips"][0]["targets"]["cat"]
    best = np.array(Image.open(masks[span["best_frame"]]))
    assert best.any() and not np.array(Image.open(masks[0])).any()


class HtmlChecker(HTMLParser):
    """Every element closed in order (void elements excepted); collects image sources."""

    VOID = frozenset({"meta", "img", "br", "hr", "link", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.problems: list[str] = []
        self.images: list[str] = []
        self.doctype = False

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl.lower() == "doctype html"

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if not self.doctype:
            self.problems.append("no <!DOCTYPE html> first")
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open.pop() != tag:
            self.problems.append(f"</{tag}> does not close the open element")


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, archive):
    _, folder, target, _ = archive
    out = tmp_path / "out"
    cases = [
        (["--target", str(tmp_path / "missing.target"), str(folder)], "does not exist"),
        (["--target", str(target), str(tmp_path / "nowhere")], "does not exist"),
        (
            ["--target", str(target), "--target", str(target), str(folder)],
            "two targets are named 'cat'",
        ),
    ]
    foreign = save_target(
        tmp_path / "dog.target",
        Target(torch.ones(32)),
        model={"model": "vit_b", "checkpoint_sha256": "ab" * 32},
        config=PerSAMConfig(),
        shots=1,
    )
    cases.append((["--target", str(foreign), str(folder)], "made with model vit_b, not demo"))
    twins = tmp_path / "twins"
    twins.mkdir()
    (twins / "a.mp4").write_bytes((folder / "hit_a.mp4").read_bytes())
    write_folder(twins / "a", [np.zeros((*SIZE, 3), np.uint8)])
    cases.append((["--target", str(target), str(twins)], "two clips are named 'a'"))
    with_masks = tmp_path / "m.csv"
    with_masks.write_text(f"input,mask\n{folder / 'hit_a.mp4'},x.png\n")
    cases.append((["--target", str(target), str(with_masks)], "unknown column(s) mask"))
    cases.append((["--target", str(target), str(folder), "--fps", "0"], "fps"))
    photo = tmp_path / "holiday.jpg"
    Image.fromarray(np.zeros((*SIZE, 3), np.uint8)).save(photo)
    cases.append((["--target", str(target), str(photo)], "use persam-video segment"))
    for args, message in cases:
        result = find(*args, "--out", str(out))
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert not out.exists(), args
    inside = find(str(folder), "--target", str(target), "--out", str(folder / "results"))
    assert inside.exit_code == 2 and "inside the input folder" in inside.output
    assert not (folder / "results").exists()


@pytest.mark.slow
def test_kill_and_resume_gives_the_same_reports(tmp_path, archive, first_run):
    _, folder, target, _ = archive
    reference, _ = first_run
    out = tmp_path / "killed"
    command = [
        sys.executable,
        "-m",
        "persam_video.cli",
        "find",
        str(folder),
        "--target",
        str(target),
        "--out",
        str(out),
        "--model",
        "demo",
        "-q",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while not (out / "clean_c" / "done.json").exists():
        assert process.poll() is None, "find ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "hit_b" / "done.json").exists(), "killed too late to test resuming"
    assert not (out / "found.json").exists()
    resumed = find(str(folder), "--target", str(target), "--out", str(out))
    assert resumed.exit_code == 1, resumed.output
    assert "already done" in resumed.output and "1 failed" in resumed.output
    got = json.loads((out / "found.json").read_text())
    assert got == json.loads((reference / "found.json").read_text())
    for clip in got["clips"]:
        for span in clip["targets"]["cat"]:
            assert (out / span["thumbnail"]).read_bytes() == (
                reference / span["thumbnail"]
            ).read_bytes()
    assert not [p for p in out.rglob(".*") if p.name != MANIFEST_NAME]


@pytest.mark.slow
@pytest.mark.ray
def test_ray_find_matches_local_mode(tmp_path, archive, first_run):
    pytest.importorskip("ray")
    _, folder, target, _ = archive
    reference, _ = first_run
    out = tmp_path / "ray"
    result = find(
        str(folder), "--target", str(target), "--out", str(out), "--ray", "local", "--workers", "2"
    )
    assert result.exit_code == 1, result.output
    assert "5 done, 0 already done, 1 failed" in result.output
    assert json.loads((out / "found.json").read_text()) == json.loads(
        (reference / "found.json").read_text()
    )
