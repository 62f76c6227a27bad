"""tools/bench_memory.py: the memory engine alone, with re-detection and PerSAM's engine on the
family clips, and find's presence precision and recall; cached. Checks what it writes and
that it reuses its cache, never its scores (random weights)."""

from __future__ import annotations

import json

import pytest

from persam_video.memory.models import save_random_model, tiny_config
from tests.e2e.test_bench_quality_tool import tiny_model_file
from tests.helpers import loaded_tool

pytest.importorskip("transformers", reason="transformers (the sam2 extra)")


@pytest.fixture(scope="module")
def tool():
    yield from loaded_tool("bench_memory")


@pytest.mark.slow
def test_runs_per_attribute_find_presence_and_the_cache(tool, tmp_path, capsys):
    folder = save_random_model(tmp_path / "sam2", tiny_config(), seed=2)
    persam = tiny_model_file(tmp_path / "tiny0.safetensors", 0)
    report = tmp_path / "report.json"
    argv = ["--memory", str(folder), "--persam", str(persam), "--families"]
    argv += ["occlusion,scene-cut", "--clips-per-family", "1", "--frames", "16"]
    argv += ["--threads", "1", "--work", str(tmp_path / "work"), "--json", str(report)]
    assert tool.main(argv) == 0
    first = json.loads(report.read_text())
    runs = set(first["jf"])
    assert runs == {
        "static",
        "memory alone",
        "memory + re-detection",
        "+ guided attention",
        "+ semantic prompting",
        "+ cascaded refinement",
        "PerSAM default: tiny0",
        "PerSAM default (mean over models)",
    }
    for stats in first["jf"].values():
        assert set(stats) == {"all", "occlusion", "scene-cut"}
        assert 0 <= stats["all"]["J&F-Mean"] <= 1 and stats["all"]["clips"] == 2
    mechanisms = ("+ guided attention", "+ semantic prompting", "+ cascaded refinement")
    for run in ("memory + re-detection", *mechanisms):
        assert "delta" in first["jf"][run]["all"]
    for engine in ("memory", "tiny0"):
        presence = first["find_presence"][engine]["all"]
        assert presence["frames"] == 32 and 0 <= presence["precision"] <= 1
        assert 0 <= presence["recall"] <= 1 and presence["present"] > 0
    out = capsys.readouterr().out
    assert "memory + re-detection minus memory alone" in out and "find: presence" in out
    # A second run reuses every cached run: the same scores and the recorded run times.
    assert tool.main(argv) == 0
    second = json.loads(report.read_text())
    assert second["jf"] == first["jf"] and second["seconds"] == first["seconds"]
