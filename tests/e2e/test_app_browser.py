"""``persam-video app`` in a real headless browser (Debian's chromium and chromedriver, driven
by Selenium): open a generated clip, click on the object in the first frame, track, and check
that the overlay video plays and that the masks download equals what ``track`` writes for the
same click. A screenshot is saved (``tmp_path``, and ``$PERSAM_TEST_ARTIFACTS`` when set).

Without chromium, chromedriver, Selenium or Gradio the test skips with a one-line reason; in CI
(``$CI`` set) it fails instead, so CI always runs it.
"""

from __future__ import annotations

import importlib.util
import io
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path
from urllib.parse import unquote, urlparse

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from persam_video.cli import cli
from persam_video.synthetic.clips import make_clip
from persam_video.synthetic.export import write_clip_video

#: Where chromium and chromedriver are on Debian (``apt-get install chromium chromium-driver``).
CHROMIUM_NAMES = ("chromium", "chromium-browser")
CHROMEDRIVER_NAMES = ("chromedriver",)
ARTIFACTS_ENV = "PERSAM_TEST_ARTIFACTS"
SCREENSHOT_NAME = "app.png"
WINDOW = (1280, 1900)
CLIP_SEED, CLIP_FRAMES, CLIP_SIZE = 2, 12, (180, 240)
#: Seconds to wait for the server to answer, and for one step in the page.
SERVER_WAIT_S, STEP_WAIT_S = 180, 120
POLL_S = 0.25
#: What the progress bar of a tracking run says (the descriptions app_state reports).
PROGRESS_TEXTS = ("starting", "tracking", "writing the videos")


def _tool(names: tuple[str, ...]) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def _missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    if _tool(CHROMIUM_NAMES) is None:
        return "no chromium on PATH (apt-get install chromium chromium-driver)"
    if _tool(CHROMEDRIVER_NAMES) is None:
        return "no chromedriver on PATH (apt-get install chromium-driver)"
    for module, extra in (("selenium", "dev"), ("gradio", "app")):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[{extra}]')"
    return None


@pytest.fixture(scope="module")
def tools() -> None:
    reason = _missing()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test: {reason}")
        pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_server(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + SERVER_WAIT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the app exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(POLL_S)
    raise AssertionError(f"the app did not answer on {url} within {SERVER_WAIT_S} s")


@pytest.fixture
def app_server(tools, tmp_path):
    """``persam-video app --model demo`` on a free port of 127.0.0.1; (url, process)."""
    port = _free_port()
    log = (tmp_path / "app.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "persam_video.cli",
            "app",
            "--model",
            "demo",
            "--port",
            str(port),
            "-q",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_for_server(url, process)
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


@pytest.fixture
def browser(tools):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _tool(CHROMIUM_NAMES)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(_tool(CHROMEDRIVER_NAMES)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, STEP_WAIT_S, poll_frequency=POLL_S).until(
        condition, message=f"waited {STEP_WAIT_S} s for {what}"
    )


def _page_says(driver, text: str) -> bool:
    return text in driver.find_element("tag name", "body").text


def _click_at(driver, image, x: int, y: int, frame_width: int) -> None:
    """Click the frame's pixel (x, y) on ``image``, which shows the frame scaled up by a whole
    factor and then fitted into its box as Gradio does (shrunk to fit, never enlarged)."""
    from selenium.webdriver.common.action_chains import ActionChains

    width, height, natural_w, natural_h = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return [r.width, r.height, arguments[0].naturalWidth, arguments[0].naturalHeight];",
        image,
    )
    factor = natural_w // frame_width
    fit = min(width / natural_w, height / natural_h, 1.0)
    left, top = (width - natural_w * fit) / 2, (height - natural_h * fit) / 2
    # The middle of the frame pixel's block; Selenium's offsets are from the element's centre.
    dx = left + (x + 0.5) * factor * fit - width / 2
    dy = top + (y + 0.5) * factor * fit - height / 2
    ActionChains(driver).move_to_element_with_offset(image, round(dx), round(dy)).click().perform()


def _inside_point(mask: np.ndarray) -> tuple[int, int]:
    """The pixel of a mask farthest from its edge, (x, y)."""
    distance = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return int(x), int(y)


def _save_screenshot(driver, tmp_path: Path) -> Path:
    shot = tmp_path / SCREENSHOT_NAME
    driver.save_screenshot(str(shot))
    artifacts = os.environ.get(ARTIFACTS_ENV)
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / SCREENSHOT_NAME)
    return shot


@pytest.mark.slow
def test_click_track_and_download_in_a_browser(tmp_path, app_server, browser):
    from selenium.webdriver.common.by import By

    from persam_video.apps import webapp

    url, process = app_server
    began = time.monotonic()
    clip = make_clip(CLIP_SEED, n_frames=CLIP_FRAMES, size_hw=CLIP_SIZE, n_objects=1)
    video, _ = write_clip_video(clip, tmp_path / "clip")
    x, y = _inside_point(clip.labels[0] == clip.object_ids[0])

    browser.get(url)
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f"#{webapp.TRACK_ID}"), "the page")
    # Tracking before a video is open: a message in the page, and the server goes on.
    browser.find_element(By.ID, webapp.TRACK_ID).click()
    _wait(browser, lambda d: _page_says(d, "open a video first"), "the no-video message")

    # A file that is not a video: a notice naming it, no output left with an empty red "Error"
    # badge, the upload field emptied (the failed file's name does not stay).
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all\n" * 50)
    field = f"#{webapp.UPLOAD_ID}"
    browser.find_element(By.CSS_SELECTOR, f"{field} input[type=file]").send_keys(str(broken))
    _wait(browser, lambda d: _page_says(d, "broken.mp4 cannot be read as a video"), "the notice")
    _wait(
        browser,
        lambda d: "broken.mp4" not in d.find_element(By.CSS_SELECTOR, field).text,
        "the upload field to empty",
    )
    badges = [
        e for e in browser.find_elements(By.CSS_SELECTOR, ".error") if e.text.strip() == "Error"
    ]
    assert not badges and "\nError\n" not in browser.find_element(By.TAG_NAME, "body").text

    upload = browser.find_element(By.CSS_SELECTOR, f"{field} input[type=file]")
    upload.send_keys(str(video))
    frame_img = f"#{webapp.FRAME_ID} img"
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, frame_img), "the first frame")
    image = browser.find_element(By.CSS_SELECTOR, frame_img)
    _wait(
        browser,
        lambda d: d.execute_script("return arguments[0].naturalWidth", image) >= CLIP_SIZE[1],
        "the frame to load",
    )
    _click_at(browser, image, x, y, CLIP_SIZE[1])

    command_box = f"#{webapp.COMMAND_ID} textarea, #{webapp.COMMAND_ID} input"

    def command(driver) -> str:
        return driver.find_element(By.CSS_SELECTOR, command_box).get_attribute("value") or ""

    _wait(browser, lambda d: "--point" in command(d), "the click to become a prompt")
    said = command(browser)
    clicked = [w for w in shlex.split(said) if w.startswith("1=")]
    assert len(clicked) == 1 and clicked[0].endswith("@0"), said
    at_x, at_y = (int(v) for v in clicked[0][2:-2].split(","))
    assert abs(at_x - x) <= 1 and abs(at_y - y) <= 1, (said, x, y)  # the pixel clicked

    player = f"#{webapp.OVERLAY_ID} video"
    # Track, and cancel once the progress bar shows: a message, no overlay; the page goes on.
    browser.find_element(By.ID, webapp.TRACK_ID).click()
    _wait(browser, lambda d: any(_page_says(d, s) for s in PROGRESS_TEXTS), "the progress bar")
    browser.find_element(By.ID, webapp.CANCEL_ID).click()
    _wait(browser, lambda d: _page_says(d, "tracking cancelled"), "the cancel message")
    assert not browser.find_elements(By.CSS_SELECTOR, player)
    browser.find_element(By.ID, webapp.TRACK_ID).click()

    def playable(driver) -> bool:
        videos = driver.find_elements(By.CSS_SELECTOR, player)
        return bool(videos) and driver.execute_script(
            "return arguments[0].readyState >= 2 && arguments[0].videoWidth > 0", videos[0]
        )

    _wait(browser, playable, "the overlay video to play")
    width = browser.execute_script(
        "return arguments[0].videoWidth", browser.find_element(By.CSS_SELECTOR, player)
    )
    assert width == CLIP_SIZE[1]
    links = _wait(
        browser,
        lambda d: [
            a.get_attribute("href")
            for a in d.find_elements(By.CSS_SELECTOR, f"#{webapp.DOWNLOADS_ID} a")
            if a.get_attribute("href")
        ],
        "the downloads",
    )
    names = {Path(urlparse(link).path).name: link for link in links}
    assert {"masks.zip", "overlay.mp4", "results.json", "report.html"} <= set(names)
    with urllib.request.urlopen(names["masks.zip"], timeout=30) as answer:
        archive = zipfile.ZipFile(io.BytesIO(answer.read()))
    downloaded = {Path(n).name: archive.read(n) for n in archive.namelist()}
    browser.execute_script("window.scrollTo(0, 0)")
    _save_screenshot(browser, tmp_path)
    seconds = time.monotonic() - began

    # `track` with the page's command line (the uploaded clip under its own path) writes the
    # same masks.
    words = shlex.split(said)
    words[2] = str(video)
    words[words.index("--out") + 1] = str(tmp_path / "cli")
    result = CliRunner().invoke(cli, [*words[1:], "-q"])
    assert result.exit_code == 0, result.output
    written = {p.name: p.read_bytes() for p in sorted((tmp_path / "cli" / "masks").iterdir())}
    assert len(written) == CLIP_FRAMES
    assert downloaded == written

    # Stopping the app removes its temporary folder (uploads and outputs).
    root = Path(unquote(urlparse(names["masks.zip"]).path.split("file=", 1)[1])).parents[2]
    assert root.name.startswith("persam-video-app-"), root
    assert root.exists()
    process.send_signal(signal.SIGTERM)
    process.wait(60)
    assert not root.exists()
    print(f"browser flow took {seconds:.1f} s")
