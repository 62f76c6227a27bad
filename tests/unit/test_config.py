"""Config dataclasses, YAML presets and overrides."""

from __future__ import annotations

import json

import pytest
import yaml

from persam_video.apps.run_record import check_run_record
from persam_video.config import (
    PRESET_NAMES,
    REMOVED_KEYS,
    ConfigError,
    PerSAMConfig,
    load_config,
    save_config,
    valid_keys,
)
from tests.helpers import REPO_ROOT

CONFIGS = REPO_ROOT / "configs"


def test_every_preset_has_a_yaml_file_and_loads():
    assert sorted(p.stem for p in CONFIGS.glob("*.yaml")) == sorted(PRESET_NAMES)
    for name in PRESET_NAMES:
        assert load_config(name) == load_config(CONFIGS / f"{name}.yaml")


def test_default_yaml_spells_out_the_dataclass_defaults():
    data = yaml.safe_load((CONFIGS / "default.yaml").read_text())
    assert data == PerSAMConfig().to_dict()
    assert PerSAMConfig.default() == PerSAMConfig()


def test_paper_video_preset_is_the_official_video_setting():
    cfg = PerSAMConfig.paper_video()
    assert cfg == load_config(CONFIGS / "paper_video.yaml")
    assert (cfg.prior.num_positive, cfg.prior.num_negative) == (2, 0)
    assert cfg.prior.pool == "mean_max" and cfg.prior.ref_mask_value == 215
    assert cfg.track.box_prompt and cfg.track.box_margin == 10 and cfg.track.box_center_point
    assert cfg.decode.first_multimask and cfg.decode.first_pick == "largest"
    assert cfg.decode.refine_steps == 2
    assert not (cfg.decode.guided_attention or cfg.decode.semantic_prompt)
    assert not (cfg.track.update or cfg.track.occlusion)


def test_paper_image_preset_is_persam_py():
    cfg = PerSAMConfig.paper_image()
    assert (cfg.prior.num_positive, cfg.prior.num_negative, cfg.prior.pool) == (1, 1, "mean")
    assert cfg.prior.ref_cells == "paper" and cfg.prior.ref_mask_value == 128
    assert cfg.decode.guided_attention and cfg.decode.semantic_prompt
    assert cfg.decode.guidance_map == "paper" and not cfg.decode.first_multimask


def test_overrides_parse_and_validate():
    cfg = PerSAMConfig().with_overrides(["track.momentum=0.5", "decode.guided_attention=false"])
    assert cfg.track.momentum == 0.5 and cfg.decode.guided_attention is False
    assert PerSAMConfig().with_overrides(["prior.num_positive=3"]).prior.num_positive == 3
    with pytest.raises(ConfigError, match=r"unknown config key 'track.momentun'.*valid keys"):
        PerSAMConfig().with_overrides(["track.momentun=0.5"])
    with pytest.raises(ConfigError, match="must be in"):
        PerSAMConfig().with_overrides(["track.momentum=1.5"])
    with pytest.raises(ConfigError, match="must be an integer"):
        PerSAMConfig().with_overrides(["prior.num_positive=two"])
    with pytest.raises(ConfigError, match="must be one of mean, mean_max"):
        PerSAMConfig().with_overrides(["prior.pool=max"])
    with pytest.raises(ConfigError, match="must be true or false"):
        PerSAMConfig().with_overrides(["track.update=1"])
    with pytest.raises(ConfigError, match="section.field=value"):
        PerSAMConfig().with_overrides(["momentum"])
    with pytest.raises(ConfigError, match="needs decode.first_multimask"):
        PerSAMConfig().with_overrides(["decode.first_pick=largest"])


def test_yaml_files_are_strict_and_round_trip(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("track:\n  momentum: 0.5\n  anchr: 0.1\n")
    with pytest.raises(ConfigError, match=r"'track.anchr' \(did you mean 'track.anchor'\?\)"):
        load_config(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)
    with pytest.raises(ConfigError, match="neither a preset"):
        load_config(tmp_path / "missing.yaml")
    cfg = PerSAMConfig().with_overrides(["track.anchor=0.3"])
    save_config(cfg, tmp_path / "out.yaml")
    assert load_config(tmp_path / "out.yaml") == cfg
    assert "track.anchor" in valid_keys() and "prior.pool" in valid_keys()


#: The keys of experiments removed in 0.2 (``REMOVED_KEYS``), at the values every preset had.
OLD_KEYS = {
    "prior": {"others_as_negatives": False},
    "decode": {
        "guide_refinement": False,
        "select": "last",
        "select_prior_weight": 1.0,
        "select_contrast_weight": 1.0,
    },
    "memory": {"bank": 0, "min_score": 0.8, "stride": 5, "parts": 0},
}


def _with_old_keys(config: PerSAMConfig, old: dict) -> dict:
    """``config`` as a config of 0.1 wrote it: with the removed keys (``old``) in it."""
    data = config.to_dict()
    for section, values in old.items():
        data.setdefault(section, {}).update(values)
    return data


def test_configs_with_removed_keys_still_load(tmp_path, recwarn):
    """Saved configs, target files and run records of 0.1 hold the removed experiments' keys:
    they are dropped, silently where the experiment was off."""
    assert set(REMOVED_KEYS) == {f"{s}.{k}" for s, values in OLD_KEYS.items() for k in values}
    for name in PRESET_NAMES:
        config = load_config(name)
        assert PerSAMConfig.from_dict(_with_old_keys(config, OLD_KEYS)) == config
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump(_with_old_keys(PerSAMConfig.fast(), OLD_KEYS)))
    assert load_config(old) == PerSAMConfig.fast()
    old.write_text("memory:\n  bank: 0\n  parts: 1\n")  # only a removed section
    assert load_config(old) == PerSAMConfig()
    assert not recwarn.list
    # A run record of 0.1 compares equal to today's record of the same run.
    record = {"model": "demo", "config": PerSAMConfig().to_dict()}
    stored = tmp_path / "run.json"
    stored.write_text(json.dumps({**record, "config": _with_old_keys(PerSAMConfig(), OLD_KEYS)}))
    check_run_record(stored, record)


@pytest.mark.parametrize(
    "section, key, value",
    [
        ("memory", "bank", 8),
        ("memory", "parts", 3),
        ("decode", "select", "consistency"),
        ("decode", "guide_refinement", True),
        ("prior", "others_as_negatives", True),
    ],
)
def test_a_removed_experiment_that_was_on_is_dropped_with_a_warning(section, key, value):
    data = _with_old_keys(PerSAMConfig(), {section: {key: value}})
    with pytest.warns(UserWarning, match=rf"'{section}\.{key}' was removed.*is ignored"):
        assert PerSAMConfig.from_dict(data) == PerSAMConfig()


def test_a_removed_key_is_refused_as_an_override():
    for key in REMOVED_KEYS:
        with pytest.raises(ConfigError, match=rf"'{key}' was removed.*valid keys"):
            PerSAMConfig().with_overrides([f"{key}=1"])
    assert not any(key.startswith("memory.") for key in valid_keys())
    # Unknown keys of a removed section are still unknown.
    with pytest.raises(ConfigError, match="unknown config key 'memory'"):
        PerSAMConfig.from_dict({"memory": {"bank": 0, "size": 3}})
