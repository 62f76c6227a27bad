"""write_clip_set: family clips (and mixed ones) as a DAVIS-layout set with their attributes."""

from __future__ import annotations

import numpy as np
import pytest

from persam_video.eval.davis_dataset import DavisDataset, read_label_png
from persam_video.synthetic import BENCHMARK_FIRST_SEED, iter_family_clip
from persam_video.synthetic.export import (
    DB_INFO,
    MIXED_FAMILY,
    read_sequence_attributes,
    write_clip_set,
    write_davis,
)

FRAMES = 16


def test_clip_set_round_trips_attributes_and_exact_labels(tmp_path):
    seed = BENCHMARK_FIRST_SEED
    clips = [("out-of-view", seed), ("distractors", seed), (MIXED_FAMILY, seed)]
    infos = write_clip_set(tmp_path, clips, n_frames=FRAMES)
    names = [info.name for info in infos]
    assert names == [
        f"synth-out-of-view-test-{seed:05d}",
        f"synth-distractors-test-{seed:05d}",
        f"synth-test-{seed:05d}",
    ]
    assert read_sequence_attributes(tmp_path) == {
        names[0]: ("out-of-view",),
        names[1]: ("distractors",),
        names[2]: (),
    }
    dataset = DavisDataset(tmp_path)
    assert dataset.sequences == names
    assert len(dataset.frame_paths(names[0])) == FRAMES
    annotations = sorted((tmp_path / "Annotations" / "480p" / names[0]).glob("*.png"))
    for path, (_, labels) in zip(
        annotations, iter_family_clip("out-of-view", seed, n_frames=FRAMES), strict=True
    ):
        np.testing.assert_array_equal(read_label_png(path), labels)  # every frame, exactly


def test_unknown_families_are_refused_and_plain_sets_have_no_attributes(tmp_path):
    with pytest.raises(ValueError, match="unknown clip families"):
        write_clip_set(tmp_path / "a", [("blur", 0)])
    write_davis(tmp_path / "b", [0], split="test")
    assert not (tmp_path / "b" / DB_INFO).exists()
    assert read_sequence_attributes(tmp_path / "b") == {}
