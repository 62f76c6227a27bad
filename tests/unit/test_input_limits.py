"""Limits on what a user gives, checked in the API: huge numbers, deep nesting, config ranges,
thread counts, frame rates, keyframe intervals and target values."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import typing

import pytest
import torch
from safetensors.torch import save_file

from persam_video.apps.run_record import check_run_record
from persam_video.apps.target_file import load_target, save_target
from persam_video.batch.manifest import ManifestError, read_manifest
from persam_video.config import (
    MAX_KEYFRAME_GAP,
    MAX_NESTING,
    ConfigError,
    PerSAMConfig,
    SpanRules,
    field_docs,
    load_config,
    load_json,
    load_yaml,
)
from persam_video.io import VideoReadError, parse_fps
from persam_video.persam import Target
from persam_video.runtime import MAX_THREADS, THREADS_ENV, choose_threads

HUGE = "1" + "0" * 400  # a 401-digit integer
#: Nesting depths of the hostile inputs (beyond Python's recursion limit).
DEPTHS = (5_000, 100_000)
#: Nesting depth of an indented YAML file (past the recursion limit, a few MB).
BLOCK_DEPTH = 1500
#: Longest error message expected (one short line).
SHORT = 300


# --------------------------------------------------------------------------- item 1
@pytest.mark.parametrize("key", ["track.affinity_radius", "track.momentum", "finetune.lr"])
def test_a_401_digit_integer_is_a_config_error(key):
    with pytest.raises(ConfigError) as info:
        PerSAMConfig().with_overrides([f"{key}={HUGE}"])
    assert key in str(info.value) and len(str(info.value)) < SHORT


def test_an_integer_too_long_for_python_is_a_config_error():
    with pytest.raises(ConfigError, match="cannot be read"):
        PerSAMConfig().with_overrides(["track.affinity_radius=1" + "0" * 5000])


# --------------------------------------------------------------------------- item 2
@pytest.mark.parametrize("depth", DEPTHS)
def test_deeply_nested_yaml_is_refused_in_one_line(tmp_path, depth):
    flow = tmp_path / "flow.yaml"
    flow.write_text("prior: " + "[" * depth + "]" * depth + "\n")
    block = tmp_path / "block.yaml"  # indented: its size grows as the square of the depth
    levels = min(depth, BLOCK_DEPTH)
    block.write_text("prior:\n" + "".join("  " * (i + 1) + "-\n" for i in range(levels)))
    for path in (flow, block):
        with pytest.raises(ConfigError, match=f"deeper than {MAX_NESTING} levels") as info:
            load_config(path)
        assert str(path) in str(info.value) and len(str(info.value)) < SHORT
    with pytest.raises(ConfigError, match="deeper than"):
        PerSAMConfig().with_overrides(["track.momentum=" + "{a: " * depth + "}" * depth])


def test_nesting_up_to_the_limit_still_parses():
    assert load_yaml("[" * MAX_NESTING + "]" * MAX_NESTING) is not None
    assert load_json("[" * MAX_NESTING + "]" * MAX_NESTING) is not None
    with pytest.raises(ConfigError):
        load_json("[" * (MAX_NESTING + 1) + "]" * (MAX_NESTING + 1))


def _target_metadata(**changes: str) -> dict[str, str]:
    metadata = {
        "format": "persam-video target",
        "format_version": "1",
        "persam_video": "0.1",
        "model": json.dumps({"model": "demo"}),
        "config": json.dumps(PerSAMConfig().to_dict()),
        "shots": "1",
    }
    return {**metadata, **changes}


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("field", ["config", "model", "finetune"])
def test_deeply_nested_target_metadata_is_refused(tmp_path, depth, field):
    path = tmp_path / "deep.target"
    deep = "[" * depth + "]" * depth
    save_file({"embedding": torch.ones(32)}, str(path), metadata=_target_metadata(**{field: deep}))
    with pytest.raises(ValueError, match="invalid metadata") as info:
        load_target(path)
    assert str(path) in str(info.value) and len(str(info.value)) < SHORT


@pytest.mark.parametrize("depth", DEPTHS)
def test_deeply_nested_manifest_rows_and_run_records_are_refused(tmp_path, depth):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        '{"input": "a.mp4", "mask": "m.png", "overrides": ' + "[" * depth + "]" * depth + "}\n"
    )
    with pytest.raises(ManifestError, match=r"m\.jsonl:1: .*deeper than"):
        read_manifest(manifest, PerSAMConfig())
    record = tmp_path / "run.json"
    record.write_text("[" * depth + "]" * depth)
    with pytest.raises(ValueError, match="is not a run record") as info:
        check_run_record(record, {"model": "demo"})
    assert len(str(info.value)) < SHORT


# --------------------------------------------------------------------------- item 3
#: The int and float fields of PerSAMConfig's sections (a new one must document its range).
NUMERIC_FIELDS = 34
RANGE = re.compile(r"Range: ([\[(])(-?[\d.]+), (-?[\d.]+)\]")


def _numeric_fields() -> list[tuple[str, type, typing.Any]]:
    """(``section.field``, its type, the dataclass of its section) of every int or float field
    of every config dataclass (SpanRules too)."""
    found = []
    sections = [
        (f.name, typing.get_type_hints(PerSAMConfig)[f.name])
        for f in dataclasses.fields(PerSAMConfig)
    ]
    for section, cls in sections:
        for name, kind in typing.get_type_hints(cls).items():
            if kind in (int, float):
                found.append((f"{section}.{name}", kind, cls))
    return found


def test_every_numeric_config_field_documents_its_range_and_enforces_it():
    docs = field_docs()
    fields_ = _numeric_fields()
    assert len(fields_) == NUMERIC_FIELDS
    for key, kind, _ in fields_:
        match = RANGE.search(docs[key])
        assert match, f"{key}: its comment names no range ({docs[key]!r})"
        bracket, low, high = (
            match.group(1),
            kind(float(match.group(2))),
            kind(float(match.group(3))),
        )
        step = 1 if kind is int else max(1e-6, abs(high) * 1e-6)
        PerSAMConfig().with_overrides([f"{key}={high}"])  # the ends are valid...
        if bracket == "[":
            PerSAMConfig().with_overrides([f"{key}={low}"])
        else:
            with pytest.raises(ConfigError, match=re.escape(key)):
                PerSAMConfig().with_overrides([f"{key}={low}"])
        for outside in (high + step, low - step):  # ... and just beyond them is refused
            with pytest.raises(ConfigError, match=re.escape(key)):
                PerSAMConfig().with_overrides([f"{key}={outside}"])


def test_span_rules_have_ranges_too():
    with pytest.raises(ConfigError, match="max_gap"):
        SpanRules(max_gap=10**400)
    with pytest.raises(ConfigError, match="min_frames"):
        SpanRules(min_frames=10**9)


@pytest.mark.parametrize("value", ["5", "-3", "1.0001"])
def test_presence_min_score_is_a_share(value):
    with pytest.raises(ConfigError, match=r"presence.min_score must be in \[0, 1\]"):
        PerSAMConfig().with_overrides([f"presence.min_score={value}"])


def test_a_huge_affinity_radius_is_refused_before_any_allocation():
    with pytest.raises(ConfigError, match=r"track.affinity_radius must be in \[0, 64\]"):
        PerSAMConfig().with_overrides(["track.affinity_radius=100000"])


# --------------------------------------------------------------------------- items 4-6
@pytest.mark.parametrize("value", [100_000, "100000", str(MAX_THREADS + 1), HUGE, "1" * 5000])
def test_threads_have_an_upper_bound(monkeypatch, value):
    with pytest.raises(ValueError, match=f"at most {MAX_THREADS}") as info:
        choose_threads(value)
    assert len(str(info.value)) < SHORT
    monkeypatch.setenv(THREADS_ENV, str(value))
    with pytest.raises(ValueError, match=re.escape(f"${THREADS_ENV}")):
        choose_threads()
    assert choose_threads(MAX_THREADS) == MAX_THREADS


@pytest.mark.parametrize("value", ["1/0", "0/0", float("inf")])
def test_fps_with_a_zero_denominator_or_no_value_is_a_read_error(value):
    with pytest.raises(VideoReadError, match="expected a positive number"):
        parse_fps(value)


def test_the_keyframe_interval_has_an_upper_bound():
    from persam_video.cli.common import InputError, keyframe_overrides

    assert keyframe_overrides(str(MAX_KEYFRAME_GAP))[-1] == f"keyframes.interval={MAX_KEYFRAME_GAP}"
    for value in (str(MAX_KEYFRAME_GAP + 1), HUGE, "1" * 5000):
        with pytest.raises(InputError, match=f"at most {MAX_KEYFRAME_GAP}") as info:
            keyframe_overrides(value)
        assert len(info.value.format_message()) < SHORT
    for key in ("keyframes.interval", "keyframes.max_gap"):
        with pytest.raises(
            ConfigError, match=re.escape(f"{key} must be in [1, {MAX_KEYFRAME_GAP}]")
        ):
            PerSAMConfig().with_overrides([f"{key}={MAX_KEYFRAME_GAP + 1}"])


# --------------------------------------------------------------------------- item 7
def _target_file(tmp_path, name: str, embedding: torch.Tensor, weights=None, **metadata):
    path = tmp_path / f"{name}.target"
    tensors = {"embedding": embedding}
    if weights is not None:
        tensors["mask_weights"] = weights
    save_file(tensors, str(path), metadata=_target_metadata(**metadata))
    return path


#: Target tensors ``personalize`` cannot make: name -> (embedding, mask weights, the error).
BAD_TARGETS = {
    "half": (torch.ones(32, dtype=torch.float16), None, "embedding is float16, not float32"),
    "long": (torch.ones(32, dtype=torch.int64), None, "embedding is int64, not float32"),
    "double": (torch.ones(32, dtype=torch.float64), None, "embedding is float64"),
    "zero": (torch.zeros(32), None, "all zeros"),
    "tiny": (torch.full((32,), 1e-30), None, "all zeros"),
    "huge": (torch.full((32,), 1e30), None, "embedding holds values of magnitude above"),
    "weights": (torch.ones(32), torch.tensor([1e30, 0.0, 0.0]), "mask_weights holds values"),
    "weights16": (torch.ones(32), torch.ones(3, dtype=torch.float16), "mask_weights is float16"),
    "nan": (torch.full((32,), math.nan), None, "NaN or infinite"),
    "inf": (torch.full((32,), math.inf), None, "NaN or infinite"),
    "nanweights": (torch.ones(32), torch.tensor([math.nan, 0.0, 0.0]), "NaN or infinite"),
}


@pytest.mark.parametrize(
    "name", [name for name in BAD_TARGETS if "nan" not in name and name != "inf"]
)
def test_target_values_personalize_cannot_make_are_refused(tmp_path, name):
    embedding, weights, expected = BAD_TARGETS[name]
    path = _target_file(tmp_path, name, embedding, weights)
    with pytest.raises(ValueError, match=re.escape(expected)) as info:
        load_target(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message and len(message) < SHORT


def test_non_finite_targets_are_refused_and_genuine_ones_load(tmp_path):
    path = _target_file(tmp_path, "meta", torch.ones(32), finetune='{"weights": [NaN, 1, 2]}')
    with pytest.raises(ValueError, match="invalid metadata.*non-finite number NaN"):
        load_target(path)
    for name in ("nan", "inf", "nanweights"):  # refused before as well
        embedding, weights, expected = BAD_TARGETS[name]
        with pytest.raises(ValueError, match=re.escape(expected)):
            load_target(_target_file(tmp_path, name, embedding, weights))
    weights = torch.tensor([0.5, 0.3, 0.2])
    for embedding in (torch.randn(32), torch.full((32,), 50.0), torch.full((32,), -0.01)):
        path = save_target(
            tmp_path / "ok.target",
            Target(embedding, weights),
            model={"model": "demo"},
            config=PerSAMConfig(),
            shots=1,
        )
        assert torch.equal(load_target(path).target.embedding, embedding)


# --------------------------------------------------------------------------- item 8
SECRET = "root:$6$s3cr3tHASH:19000:0:99999:7:::"
#: Files that are not configs: keys that are no sections, other YAML, no YAML, binary.
NOT_CONFIGS = (
    f"{SECRET}\ndaemon:*:19000:0:99999:7:::\n".encode(),
    f"password: {SECRET}\n".encode(),
    f"- {SECRET}\n".encode(),
    f"{SECRET} [\n".encode(),
    f"{{{SECRET}: 1}}\n".encode(),
    b"\xff\xfes3cr3t\x00\x01",
)


def test_a_file_that_is_not_a_config_is_never_quoted(tmp_path):
    path = tmp_path / "shadow"
    for content in NOT_CONFIGS:
        path.write_bytes(content)
        with pytest.raises(ConfigError, match="is not a YAML mapping of settings") as info:
            load_config(path)
        assert "s3cr3t" not in str(info.value) and "daemon" not in str(info.value)
    path.write_text("track:\n  anchr: 0.1\n")  # a config with a typo: the key is named
    with pytest.raises(ConfigError, match="did you mean 'track.anchor'"):
        load_config(path)
    path.write_text("")  # empty: the defaults
    assert load_config(path) == PerSAMConfig()
