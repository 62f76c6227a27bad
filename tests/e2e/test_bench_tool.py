"""tools/bench.py runs end to end and reports every measure it documents (no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT

TOOL = REPO_ROOT / "tools" / "bench.py"


def without_huge_pages_setting() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}


@pytest.mark.slow
def test_bench_reports_every_measure(tmp_path):
    """Huge pages on (the default); off in the encoder-only test below."""
    out = tmp_path / "bench.json"
    args = ["--model", "tiny", "--size", "96x64", "--frames", "3", "--objects", "2"]
    done = subprocess.run(
        [sys.executable, str(TOOL), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        env=without_huge_pages_setting(),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["machine"]["huge_pages"] is True and "huge pages on" in done.stdout
    assert report["settings"]["objects"] == 2
    encoder = report["encoder"]
    assert encoder["gflop"] > 0 and encoder["matmul_gflop_s"] > 0
    assert len(encoder["stock_runs_s"]) == len(encoder["ours_runs_s"]) == 3
    assert encoder["matmul_gflop_s"] == max(encoder["matmul_gflop_s_runs"])
    assert len(encoder["matmul_gflop_s_runs"]) == 3
    for name in ("stock", "ours"):
        run = encoder[f"{name}_best_run"]
        assert run["wall_s"] == min(encoder[f"{name}_runs_s"])
        assert {"user_cpu_s", "kernel_cpu_s", "page_faults"} <= run.keys()
    assert len(encoder["int8_runs_s"]) == len(encoder["int8_speedup_runs"]) == 3
    assert encoder["int8_best_run"]["wall_s"] == encoder["int8_s"] == min(encoder["int8_runs_s"])
    assert encoder["int8_speedup"] == pytest.approx(encoder["ours_s"] / encoder["int8_s"])
    cosine = encoder["int8_feature_cosine"]
    assert 0.9 < cosine["min"] <= cosine["mean"] < 1  # int8 ran, and rounds the features
    kinds = {
        "int8 matrix multiplies",
        "matrix multiplies",
        "attention kernel",
        "convolutions",
        "everything else",
    }
    breakdown = encoder["breakdown"]
    assert set(breakdown) == {"stock", "ours", "int8"}
    for name in ("stock", "ours", "int8"):
        assert set(breakdown[name]) == kinds
        assert all(part["s"] >= 0 for part in breakdown[name].values())
        # Every FLOP of the encoder is in one kind (the attention kernel's come from the stock
        # encoder's attention products).
        total = sum(part["gflop"] for part in breakdown[name].values())
        assert total == pytest.approx(encoder["gflop"], rel=1e-9)
    assert breakdown["stock"]["attention kernel"] == {"s": 0.0, "gflop": 0.0, "gflop_s": None}
    assert breakdown["ours"]["attention kernel"]["gflop"] > 0
    assert breakdown["ours"]["attention kernel"]["s"] > 0
    assert breakdown["ours"]["int8 matrix multiplies"]["s"] == 0.0
    assert breakdown["int8"]["int8 matrix multiplies"]["gflop"] > 0
    assert breakdown["int8"]["int8 matrix multiplies"]["s"] > 0
    assert "where the time goes" in done.stdout
    stages = report["stages_s_per_frame"]
    assert set(stages) == {
        "decode",
        "preprocess",
        "encoder",
        "decoder",
        "postprocess",
        "other",
        "write",
    }
    assert set(report["ours_frames_per_s"]) == {"masks", "masks+overlay", "masks-int8"}
    assert report["baseline_frames_per_s"] > 0 and report["speedup_vs_baseline"] > 0
    assert report["int8_speedup_vs_baseline"] > 0
    iou = report["int8_mask_iou"]
    assert iou["pairs"] > 0 and 0 <= iou["min"] <= iou["mean"] <= 1
    assert "int8 masks vs float32" in done.stdout
    assert report["peak_rss_mib_after_ours"] > 0
    keyframes = report["keyframes"]
    assert list(keyframes) == ["1", "2", "4", "8", "auto"]
    assert [keyframes[k]["keyframes"] for k in ("1", "2", "4", "8")] == [3, 2, 1, 1]
    assert keyframes["1"]["speedup_vs_1"] == 1.0
    assert "keyframes (end to end" in done.stdout


@pytest.mark.slow
def test_bench_encoder_only_stops_after_the_encoders(tmp_path):
    """Also with huge pages off (THP_MEM_ALLOC_ENABLE=0): the report says so."""
    out = tmp_path / "bench.json"
    args = ["--model", "tiny", "--size", "96x64", "--frames", "2", "--encoder-only"]
    done = subprocess.run(
        [sys.executable, str(TOOL), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        env={**without_huge_pages_setting(), "THP_MEM_ALLOC_ENABLE": "0"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["machine"]["huge_pages"] is False and "huge pages off" in done.stdout
    assert {"int8_s", "ours_s", "stock_s", "int8_feature_cosine"} <= report["encoder"].keys()
    assert "stages_s_per_frame" not in report and "ours_frames_per_s" not in report
    assert "end to end" not in done.stdout


@pytest.mark.slow
def test_bench_keyframes_only(tmp_path):
    out = tmp_path / "bench.json"
    args = [
        "--model",
        "tiny",
        "--size",
        "96x64",
        "--frames",
        "5",
        "--keyframes-only",
        "--keyframes",
        "1,4,auto",
        "--json",
        str(out),
    ]
    done = subprocess.run(
        [sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert "encoder" not in report and set(report["keyframes"]) == {"1", "4", "auto"}
    assert [report["keyframes"][k]["keyframes"] for k in ("1", "4")] == [5, 2]
    assert all(
        entry["frames"] == 5 and entry["frames_per_s"] > 0 for entry in report["keyframes"].values()
    )
    bad = subprocess.run(
        [sys.executable, str(TOOL), "--keyframes", "0", "--keyframes-only"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "--keyframes" in bad.stderr


def test_stages_only_times_several_configs_on_one_encoding(tmp_path):
    out = tmp_path / "stages.json"
    extra = tmp_path / "no-guard.yaml"
    extra.write_text("decode:\n  jump_iou: 0.0\n")
    args = ["--model", "tiny", "--size", "96x64", "--frames", "3", "--objects", "2"]
    done = subprocess.run(
        [
            sys.executable,
            str(TOOL),
            *args,
            "--stages-only",
            "--config",
            f"default,{extra}",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert list(report["configs"]) == ["default", str(extra)]
    first, second = (c["stages_s_per_frame"] for c in report["configs"].values())
    assert first["encoder"] == second["encoder"] > 0  # encoded once, the time shared
    for entry in report["configs"].values():
        stages = entry["stages_s_per_frame"]
        beyond = sum(stages[k] for k in ("preprocess", "decoder", "postprocess", "other"))
        assert entry["beyond_encoder_share"] == pytest.approx(beyond / stages["encoder"])
    assert "| default |" in done.stdout
