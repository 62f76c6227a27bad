"""tools/train_memory_model.py: a few steps train the small SAM 2 tracker through transformers'
session code, write a model folder the memory engine loads, and log the curves."""

from __future__ import annotations

import json

import pytest
import torch

from tests.helpers import loaded_tool

pytest.importorskip("transformers", reason="transformers (the sam2 extra)")


@pytest.fixture(scope="module")
def tool():
    yield from loaded_tool("train_memory_model")


@pytest.mark.slow
def test_a_few_steps_change_the_weights_and_write_a_loadable_folder(tool, tmp_path):
    from persam_video.memory.models import load_memory_model

    out, log = tmp_path / "model", tmp_path / "log.json"
    argv = ["--out", str(out), "--log", str(log), "--steps", "2", "--frames", "3"]
    argv += ["--image-size", "128", "--loss-size", "64", "--val-every", "2", "--val-clips", "1"]
    argv += ["--warmup", "1", "--log-every", "1", "--threads", "1"]
    tool.main(argv)
    model = load_memory_model("sam2.1_hiera_tiny", out)
    assert model.model.config.image_size == 128
    facts = json.loads((out / "training.json").read_text())
    assert facts["steps"] == 2 and facts["model"] == "sam2.1_hiera_tiny"
    curves = json.loads(log.read_text())
    assert [row["step"] for row in curves["train"]] == [1, 2]
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in curves["train"])
    validation = curves["validation"][-1]
    assert validation["step"] == 2 and 0 <= validation["all"]["j_model"] <= 1
    # The prompt encoder's click positions share the image's positional encoding.
    prompt = model.model.prompt_encoder.shared_embedding.positional_embedding
    assert torch.equal(prompt, model.model.shared_image_embedding.positional_embedding)
