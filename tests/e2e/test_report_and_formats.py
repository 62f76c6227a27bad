"""report.html (self-contained, its plot read back against results.json, opened in headless
Chromium without console errors) and the mask formats (per-object PNGs and COCO RLE decode to
exactly the DAVIS masks of the same run), on the first-frame path and the prompted path."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from pycocotools import mask as coco_mask

from persam_video.apps.report import KeyFrames
from persam_video.cli import cli
from persam_video.io import read_mask, write_label_png
from tests.video_factory import make_video, synthetic_labels

SIZE = (48, 64)
N_FRAMES = 6
#: pycocotools' decode warns about NumPy 2's copy keyword (its own code, harmless here).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def track(*args: str):
    return CliRunner().invoke(cli, ["track", *args, "-q"])


@pytest.fixture
def clip(tmp_path):
    video = tmp_path / "clip.mp4"
    make_video(video, n_frames=N_FRAMES, size_hw=SIZE)
    mask = tmp_path / "m.png"
    write_label_png(mask, synthetic_labels(0, SIZE))
    return video, mask


def davis_masks(folder: Path) -> list[np.ndarray]:
    return [read_mask(p) for p in sorted(folder.glob("*.png"))]


# --------------------------------------------------------------------------- formats
@pytest.mark.parametrize("prompted", [False, True], ids=["first-frame", "prompted"])
def test_every_mask_format_holds_the_same_masks(tmp_path, clip, fake_model, prompted):
    video, mask = clip
    spec = f"{mask}@2" if prompted else str(mask)
    runs = {}
    for fmt in ("davis", "per-object-png", "coco-rle"):
        out = tmp_path / fmt
        result = track(
            str(video), "--mask", spec, "--out", str(out), "--format", fmt, "--no-overlay"
        )
        assert result.exit_code == 0, result.output
        runs[fmt] = out
    reference = davis_masks(runs["davis"] / "masks")
    assert len(reference) == N_FRAMES
    ids = json.loads((runs["davis"] / "results.json").read_text())["object_ids"]
    per_object = runs["per-object-png"] / "masks"
    assert sorted(p.name for p in per_object.iterdir()) == sorted(str(i) for i in ids)
    for obj_id in ids:
        files = sorted((per_object / str(obj_id)).glob("*.png"))
        assert len(files) == N_FRAMES
        for labels, file in zip(reference, files, strict=True):
            with Image.open(file) as image:
                assert image.mode == "L"
                binary = np.asarray(image)
            assert set(np.unique(binary)) <= {0, 255}
            assert np.array_equal(binary == 255, labels == obj_id)
    lines = (runs["coco-rle"] / "masks.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == N_FRAMES * len(ids)
    doc = json.loads((runs["coco-rle"] / "results.json").read_text())
    assert doc["outputs"]["masks"] == "masks.jsonl"
    for record in records:
        rle = {
            "size": record["segmentation"]["size"],
            "counts": record["segmentation"]["counts"].encode("ascii"),
        }
        decoded = coco_mask.decode(rle).astype(bool)
        expected = reference[record["frame"]] == record["object_id"]
        assert np.array_equal(decoded, expected)
        assert record["area"] == int(expected.sum())
        if record["area"]:
            ys, xs = np.nonzero(expected)
            x0, y0, w, h = record["bbox"]
            assert (x0, y0, x0 + w - 1, y0 + h - 1) == (xs.min(), ys.min(), xs.max(), ys.max())
        frame_objects = doc["frames"][record["frame"]]["objects"]
        score = frame_objects[str(record["object_id"])]["score"]
        assert record["score"] == pytest.approx(score, abs=1e-6)


# --------------------------------------------------------------------------- report
def report_series(path: Path) -> dict:
    page = path.read_text()
    match = re.search(r'<script type="application/json" id="series">(.*?)</script>', page, re.S)
    assert match, "no series in the report"
    return json.loads(match.group(1).replace("<\\/", "</"))


def svg_points(page: str, gid: str) -> int:
    """Vertices of the plotted line with this gid in the inline SVG."""
    match = re.search(rf'<g id="{gid}">\s*<path d="([^"]*)"', page)
    assert match, f"no line {gid} in the report"
    return len(re.findall(r"[ML]\s*-?[\d.]+\s+-?[\d.]+", match.group(1)))


def test_the_report_plots_what_results_json_says(tmp_path, clip, fake_model):
    video, mask = clip
    out = tmp_path / "out"
    result = track(str(video), "--mask", str(mask), "--out", str(out), "--masked-video", "blur")
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "results.json").read_text())
    assert doc["outputs"]["report"] == "report.html"
    page = (out / "report.html").read_text()
    assert 'href="overlay.mp4"' in page and 'href="masked.mp4"' in page  # relative links
    # self-contained: nothing fetched (the SVG's xmlns URIs are names, not requests)
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<link" not in page
    series = report_series(out / "report.html")
    assert sorted(series) == [str(i) for i in doc["object_ids"]]
    for obj_id, plotted in series.items():
        frames = doc["frames"]
        indices = [f["index"] for f in frames]
        for name, points in plotted["series"].items():
            assert [x for x, _ in points] == indices
            values = [f["objects"][obj_id][name] for f in frames]
            expected = [None if v is None else float(v) for v in values]
            assert [y for _, y in points] == pytest.approx(expected)
            finite = sum(v is not None for v in expected)
            assert svg_points(page, f"object-{obj_id}-{name}") >= finite > 0 or finite == 0
        assert plotted["events"]["annotated"] == [0]
    assert page.count("<figure>") >= 2  # first and last frames at least


def test_no_report_writes_none_and_a_partial_run_names_it_partial(tmp_path, clip, fake_model):
    video, mask = clip
    out = tmp_path / "out"
    assert track(str(video), "--mask", str(mask), "--out", str(out), "--no-report").exit_code == 0
    assert not (out / "report.html").exists()
    assert "report" not in json.loads((out / "results.json").read_text())["outputs"]


def test_key_frames_mark_losses_and_reacquisitions_within_a_bound():
    rgb = np.zeros((*SIZE, 3), np.uint8)
    labels = np.zeros(SIZE, np.uint8)
    frames = KeyFrames(annotated=frozenset({3}), limit=3)
    presence = [True, True, False, False, True, False, True, True]
    for index, present in enumerate(presence):
        frames.add(index, rgb, labels, {1: present})
    kept = frames.finish()
    reasons = {frame.index: frame.reasons for frame in kept}
    assert reasons[0] == ["first"]
    assert reasons[2] == ["lost 1"] and reasons[3] == ["annotated"]
    assert reasons[4] == ["re-acquired 1"]
    assert 7 in reasons and reasons[7] == ["last"]
    assert frames.skipped == 2  # frames 5 (lost) and 6 (re-acquired) beyond the limit


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def test_the_report_opens_in_headless_chromium_without_console_errors(tmp_path, clip, fake_model):
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser test: chromium and chromedriver are missing")
        pytest.skip("no chromium/chromedriver here (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    video, mask = clip
    out = tmp_path / "out"
    assert track(str(video), "--mask", str(mask), "--out", str(out)).exit_code == 0
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get((out / "report.html").resolve().as_uri())
        assert driver.title.startswith("persam-video")
        objects = json.loads((out / "results.json").read_text())["object_ids"]
        assert len(driver.find_elements("css selector", ".timeline svg")) == len(objects)
        images = driver.find_elements("css selector", "figure img")
        assert images and all(
            driver.execute_script("return arguments[0].naturalWidth", img) > 0 for img in images
        )
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == []
        driver.save_screenshot(str(tmp_path / "report.png"))
        artifacts = os.environ.get("PERSAM_TEST_ARTIFACTS")
        if artifacts:
            Path(artifacts).mkdir(parents=True, exist_ok=True)
            shutil.copy(tmp_path / "report.png", Path(artifacts) / "report.png")
    finally:
        driver.quit()


def test_heatmap_shows_each_objects_similarity_side_by_side(tmp_path, clip, fake_model):
    from persam_video.apps import visualize
    from persam_video.io import open_source

    video, mask = clip
    out = tmp_path / "out"
    result = track(str(video), "--mask", str(mask), "--out", str(out), "--heatmap")
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "results.json").read_text())
    assert doc["outputs"]["heatmap"] == "similarity.mp4"
    with open_source(out / "similarity.mp4") as heat:
        assert heat.size == (SIZE[0], SIZE[1] * len(doc["object_ids"]))
        assert sum(1 for _ in heat) == N_FRAMES
    # the colour scale: a map of -1 is the colour map's low end, +1 its high end
    frame = np.zeros((*SIZE, 3), np.uint8)
    labels = np.zeros(SIZE, np.uint8)
    low = visualize.heatmap(frame, labels, [(1, np.full(SIZE, -1.0, np.float32))])
    high = visualize.heatmap(frame, labels, [(1, np.full(SIZE, 1.0, np.float32))])
    corner = (SIZE[0] - 1, SIZE[1] - 1)  # away from the legend
    assert low[corner][2] > low[corner][0] and high[corner][0] > high[corner][2]  # blue, red
    prompted = track(str(video), "--mask", f"{mask}@2", "--out", str(tmp_path / "p"), "--heatmap")
    assert prompted.exit_code == 2 and "--heatmap works when" in prompted.output


def test_points_are_drawn_on_the_overlay_of_a_prompted_run(tmp_path, clip):
    from persam_video.io import open_source

    video, mask = clip
    overlays = []
    for extra in ([], ["--points"]):
        out = tmp_path / f"run{len(extra)}"
        result = track(
            str(video), "--mask", f"{mask}@2", "--out", str(out), "--model", "demo", *extra
        )
        assert result.exit_code == 0, result.output
        with open_source(out / "overlay.mp4") as frames:
            overlays.append([f.rgb.astype(int) for f in frames])
    plain, drawn = overlays
    changed = [i for i, (a, b) in enumerate(zip(plain, drawn, strict=True)) if np.abs(a - b).max()]
    assert len(changed) >= len(plain) // 2  # the tracked frames show their prompt points


def test_the_report_names_its_dashed_lines_reads_the_frame_rate_and_shows_the_prompts(
    tmp_path, clip, fake_model
):
    from persam_video.apps.report import frame_rate_text, prompts_text

    assert frame_rate_text("3725/126", "input") == "29.56 frames/s (3725/126, input)"
    assert frame_rate_text("25", "--fps") == "25 frames/s (--fps)"
    assert prompts_text(
        [
            {"object": 1, "frame": 3, "kind": "points", "points": [[1, 2], [3, 4]]},
            {"object": 2, "frame": 0, "kind": "box", "box": [0, 0, 9, 9]},
        ]
    ) == ("object 1: 2 points on frame 3; object 2: a box on frame 0")
    video, _ = clip
    out = tmp_path / "out"
    result = track(str(video), "--point", "1=20,20@2", "--out", str(out))
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text()
    assert "annotated (dashed)" in page  # the legend of the dashed lines, in the SVG
    assert "object 1: 1 point on frame 2" in page
    assert "frames/s (" in page
