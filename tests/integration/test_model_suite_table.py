"""tools/model_suite_table.py reads a model's training facts and validation figures back."""

from __future__ import annotations

import subprocess
import sys

from persam_video.model.demo import demo_model_info, demo_weights_path
from tests.helpers import REPO_ROOT


def test_the_table_shows_what_the_weights_file_records():
    out = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "tools" / "model_suite_table.py"),
            str(demo_weights_path()),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    header, _, row = out
    cells = dict(zip(header.strip("| ").split(" | "), row.strip("| ").split(" | "), strict=True))
    info = demo_model_info()
    metrics = info["training"]["validation"]["metrics"]
    assert cells["steps"] == str(info["training"]["steps"])
    assert cells["input"] == str(info["spec"]["image_size"])
    assert cells["1-click IoU"] == f"{metrics['1-click IoU']['all']:.3f}"
    assert cells["PerSAM image-mode IoU (A -> B)"] == (
        f"{metrics['PerSAM image-mode IoU (A -> B)']['all']:.3f}"
    )
