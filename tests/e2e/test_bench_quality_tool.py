"""tools/bench_quality.py: several models x variants on family clips, per attribute, cached.

Checks what the tool writes and that it reuses (and only reuses) its cache; never its scores.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
from safetensors.torch import save_file

from persam_video.model.spec import build_sam_from_spec, tiny_sam_spec
from tests.helpers import REPO_ROOT

TOOL = REPO_ROOT / "tools" / "bench_quality.py"
FAMILIES = ("occlusion", "fast-motion")
VARIANTS = ("static", "oracle box", "default", "default, keyframes 2")
FRAMES = 16  # the shortest family clip


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("bench_quality", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def tiny_model_file(path, seed: int):
    """A random-weight tiny SAM in the weights-file format of tools/train_demo_model.py."""
    spec = tiny_sam_spec()
    sam = build_sam_from_spec(spec, seed=seed)
    state = {k: v.detach().contiguous() for k, v in sam.state_dict().items()}
    save_file(state, str(path), metadata={"spec": json.dumps(spec.to_dict()), "name": path.stem})
    return path


@pytest.mark.slow
def test_models_by_variants_per_attribute_and_the_cache(tool, tmp_path, capsys, monkeypatch):
    models = [tiny_model_file(tmp_path / f"tiny{seed}.safetensors", seed) for seed in (0, 1)]
    report_path = tmp_path / "report.json"
    argv = [
        "--models",
        ",".join(map(str, models)),
        "--families",
        *FAMILIES,
        "--clips-per-family",
        "1",
        "--frames",
        str(FRAMES),
        "--variants",
        *VARIANTS,
        "--work",
        str(tmp_path / "work"),
        "--json",
        str(report_path),
        "--device",
        "cpu",
        "--threads",
        "1",
    ]
    assert tool.main(argv) == 0
    first = capsys.readouterr()
    report = json.loads(report_path.read_text())
    labels = ["tiny0", "tiny1"]
    assert [m["label"] for m in report["settings"]["models"]] == labels
    assert [c["family"] for c in report["clips"]] == list(FAMILIES)
    assert [c["attributes"] for c in report["clips"]] == [[f] for f in FAMILIES]
    groups = {"all", *FAMILIES}
    for label in labels:
        assert set(report["results"][label]) == set(VARIANTS)
        for variant in VARIANTS:
            entry = report["results"][label][variant]
            assert set(entry["groups"]) == groups
            for group in FAMILIES:
                stats = entry["groups"][group]
                assert stats["clips"] == 1
                assert 0.0 <= stats["J&F-Mean"] <= 1.0
            table = entry["per_object"]
            rows = [dict(zip(table["columns"], row, strict=True)) for row in table["rows"]]
            assert {row["sequence"] for row in rows} == {c["name"] for c in report["clips"]}
            assert len(rows) == sum(c["objects"] for c in report["clips"])
        results = report["results"][label]
        # The share of frames SAM ran on: all of them, or every second one (16 frames a clip).
        assert results["default"]["sam_frames"] == 1.0
        assert results["default, keyframes 2"]["sam_frames"] == 0.5
        assert "sam_frames" not in results["static"] and "sam_frames" not in results["oracle box"]
        static = report["results"][label]["static"]["groups"]["all"]
        assert "delta" in static and "delta_se" in static  # paired with default over clips
        assert "delta" not in report["results"][label]["default"]["groups"]["all"]
    mean = report["mean_over_models"]
    for variant in VARIANTS:
        assert set(mean[variant]) == groups
    per_model = [report["results"][m]["static"]["groups"]["all"]["delta"] for m in labels]
    assert mean["static"]["all"]["delta"] == pytest.approx(sum(per_model) / len(per_model))
    for variant in VARIANTS:
        assert f"| tiny0 | {variant} |" in first.out and f"| tiny1 | {variant} |" in first.out
    assert "| fast-motion (1) | static |" in first.out
    assert "ran in" in first.err

    # Second run: everything comes from the cache; running anything would fail.
    def must_not_run(*args, **kwargs):
        raise AssertionError("a cached (model, variant) was run again")

    monkeypatch.setattr(tool, "run_variant", must_not_run)
    assert tool.main(argv) == 0
    second = capsys.readouterr()
    assert second.err.count("reused from the cache") == len(labels) * len(VARIANTS)
    again = json.loads(report_path.read_text())
    assert again["results"] == report["results"]

    # Another override is another config: those runs are redone, the static baseline is not.
    ran = []

    def record_run(model, get_sam, variant, *args, **kwargs):
        ran.append((model.label, variant))
        table = report["results"][model.label][variant]["per_object"]
        objects = [dict(zip(table["columns"], row, strict=True)) for row in table["rows"]]
        return {"seconds": 0.0, "objects": objects}

    monkeypatch.setattr(tool, "run_variant", record_run)
    assert tool.main([*argv, "--set", "track.box_margin=0.2"]) == 0
    capsys.readouterr()
    assert sorted(ran) == sorted(
        (label, variant) for label in labels for variant in ("default", "default, keyframes 2")
    )

    # An ad-hoc variant (--try) runs `default` with its overrides, after --variants.
    specs = {}

    def record_spec(model, get_sam, variant, spec, *args, **kwargs):
        specs[(model.label, variant)] = spec
        return record_run(model, get_sam, "default")

    monkeypatch.setattr(tool, "run_variant", record_spec)
    assert tool.main([*argv, "--try", "margin 0.2: track.box_margin=0.2"]) == 0
    assert "| tiny0 | margin 0.2 |" in capsys.readouterr().out
    assert specs == {
        (label, "margin 0.2"): ("default", ["track.box_margin=0.2"]) for label in labels
    }
    tried = json.loads(report_path.read_text())["settings"]["variants"]["margin 0.2"]
    assert tried == {"preset": "default", "overrides": ["track.box_margin=0.2"]}


def test_unknown_families_and_variants_are_refused(tool):
    with pytest.raises(SystemExit):
        tool.parse_args(["--families", "blur"])
    with pytest.raises(SystemExit):
        tool.parse_args(["--variants", "turbo"])
    with pytest.raises(SystemExit):
        tool.parse_args(["--families", "occlusion", "--frames", "8"])
    args = tool.parse_args(["--families", "all", "--models", "demo,demo2", "x"])
    assert args.families[0] == "occlusion" and len(args.families) == 8  # scene-cut the last
    assert args.models == ["demo", "demo2", "x"]


def test_ad_hoc_variants(tool):
    args = tool.parse_args(
        ["--variants", "default", "--try", "m5: track.box_margin=5 decode.jump_iou=0.5"]
    )
    assert args.variants == ["default", "m5"]
    assert args.table["m5"] == ("default", ["track.box_margin=5", "decode.jump_iou=0.5"])
    for bad in (
        "m5 track.box_margin=5",
        ": track.box_margin=5",
        "m5:",
        "m5: track.nope=1",
        "m5: memory.bank=2",  # a removed experiment
        "m5: track.box_margin=abc",
        "default: track.box_margin=5",
    ):
        with pytest.raises(SystemExit):
            tool.parse_args(["--try", bad])


def test_runs_sharing_work_prepare_the_clips_once(tool, tmp_path, monkeypatch):
    """The clip set is written aside and renamed into place: a leftover incomplete copy is
    replaced, a complete copy another run finished meanwhile is kept, a failure leaves
    nothing behind."""
    clips = [("occlusion", 1000)]
    calls = []
    real_writer = tool.write_clip_set

    def fake_writer(root, clips, *, n_frames, progress):
        calls.append(root)
        return real_writer(root, clips, n_frames=n_frames, progress=progress)

    monkeypatch.setattr(tool, "write_clip_set", fake_writer)
    work = tmp_path / "work"
    work.mkdir()
    _, key = tool.prepare_clips(work, clips, FRAMES, False)
    data = work / f"data-{key[: tool.KEY_CHARS]}"
    leftover = work / "data-left"
    # An incomplete copy (an interrupted run of an older version) is replaced.
    tool.remove_quietly(data)
    (data / "JPEGImages" / "half").mkdir(parents=True)
    dataset, _ = tool.prepare_clips(work, clips, FRAMES, False)
    assert (data / tool.DATA_DONE).is_file() and not (data / "JPEGImages" / "half").exists()
    assert len(dataset.sequences) == 1
    assert calls[-1] != data and not calls[-1].exists()  # written aside, then renamed
    # Another run publishes its copy while this one writes: its copy stays.
    tool.remove_quietly(data)

    def racing_writer(root, clips, *, n_frames, progress):
        real_writer(leftover, clips, n_frames=n_frames, progress=progress)
        (leftover / tool.DATA_DONE).write_text('["theirs"]')
        leftover.rename(data)
        return fake_writer(root, clips, n_frames=n_frames, progress=progress)

    monkeypatch.setattr(tool, "write_clip_set", racing_writer)
    tool.prepare_clips(work, clips, FRAMES, False)
    assert (data / tool.DATA_DONE).read_text() == '["theirs"]'
    assert sorted(p.name for p in work.iterdir()) == [data.name]
    # A run that fails leaves no temporary behind.
    tool.remove_quietly(data)

    def failing_writer(root, clips, *, n_frames, progress):
        root.mkdir()
        raise RuntimeError("disk full")

    monkeypatch.setattr(tool, "write_clip_set", failing_writer)
    with pytest.raises(RuntimeError):
        tool.prepare_clips(work, clips, FRAMES, False)
    assert list(work.iterdir()) == []
