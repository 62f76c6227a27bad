"""tools/bench.py runs end to end and reports every measure it documents (no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT

TOOL = REPO_ROOT / "tools" / "bench.py"


@pytest.mark.slow
@pytest.mark.parametrize("huge_pages", [None, "0"])
def test_bench_reports_every_measure(tmp_path, huge_pages):
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if huge_pages is not None:
        env["THP_MEM_ALLOC_ENABLE"] = huge_pages
    out = tmp_path / "bench.json"
    args = ["--model", "tiny", "--size", "96x64", "--frames", "3", "--objects", "2"]
    done = subprocess.run(
        [sys.executable, str(TOOL), *args, "--json", str(out)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["machine"]["huge_pages"] is (huge_pages is None)
    assert f"huge pages {'on' if huge_pages is None else 'off'}" in done.stdout
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
    kinds = {"matrix multiplies", "attention kernel", "convolutions", "everything else"}
    breakdown = encoder["breakdown"]
    for name in ("stock", "ours"):
        assert set(breakdown[name]) == kinds
        assert all(part["s"] >= 0 for part in breakdown[name].values())
        # Every FLOP of the encoder is in one kind (the attention kernel's come from the stock
        # encoder's attention products).
        total = sum(part["gflop"] for part in breakdown[name].values())
        assert total == pytest.approx(encoder["gflop"], rel=1e-9)
    assert breakdown["stock"]["attention kernel"] == {"s": 0.0, "gflop": 0.0, "gflop_s": None}
    assert breakdown["ours"]["attention kernel"]["gflop"] > 0
    assert breakdown["ours"]["attention kernel"]["s"] > 0
    assert "where the time goes" in done.stdout
    stages = report["stages_s_per_frame"]
    assert set(stages) == {
        "decode", "preprocess", "encoder", "decoder", "postprocess", "other", "write"
    }  # fmt: skip
    assert set(report["ours_frames_per_s"]) == {"masks", "masks+overlay"}
    assert report["baseline_frames_per_s"] > 0 and report["speedup_vs_baseline"] > 0
    assert report["peak_rss_mib_after_ours"] > 0


def test_stages_only_times_several_configs_on_one_encoding(tmp_path):
    out = tmp_path / "stages.json"
    extra = tmp_path / "selection.yaml"
    extra.write_text("decode:\n  select: consistency\n")
    args = ["--model", "tiny", "--size", "96x64", "--frames", "3", "--objects", "2"]
    done = subprocess.run(
        [sys.executable, str(TOOL), *args, "--stages-only", "--config", f"default,{extra}",
         "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
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
