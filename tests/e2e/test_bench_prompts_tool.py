"""tools/bench_prompts.py: frame 0 versus the largest frame, per model; checks what the tool
writes and that the largest-frame mode really annotates the frame where each object is largest,
never its scores."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.e2e.test_bench_quality_tool import tiny_model_file
from tests.helpers import loaded_tool


@pytest.fixture(scope="module")
def tool():
    yield from loaded_tool("bench_prompts")


@pytest.mark.slow
def test_the_tool_reports_both_modes_per_model_and_their_mean(tool, tmp_path, capsys):
    models = [tiny_model_file(tmp_path / f"tiny-{seed}.safetensors", seed) for seed in (0, 1)]
    out = tmp_path / "bench.json"
    code = tool.main(
        [
            "--models",
            ",".join(str(m) for m in models),
            "--families",
            "scale-change",
            "--clips-per-family",
            "1",
            "--frames",
            "16",
            "--work",
            str(tmp_path / "work"),
            "--json",
            str(out),
            "--threads",
            "1",
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert sorted(report["models"]) == ["tiny-0", "tiny-1"]
    for row in [*report["models"].values(), report["mean"]]:
        assert set(row) == {"frame 0", "largest frame", "difference", "difference_se"}
        assert row["difference"] == pytest.approx(row["largest frame"] - row["frame 0"], abs=1e-4)
    assert "mean over models" in capsys.readouterr().out
    dataset = tool.DavisDataset(next((tmp_path / "work").glob("data-*")))
    (seq,) = dataset.sequences
    chosen = tool.largest_frames(dataset, seq)
    areas = [
        {int(i): int((labels == i).sum()) for i in np.unique(labels) if i}
        for labels in (dataset.load_annotation(p) for p in dataset.annotation_paths(seq))
    ]
    for obj_id, (index, mask) in chosen.items():
        assert areas[index][obj_id] == max(a.get(obj_id, 0) for a in areas) == mask.sum()
