"""No command loses the user's data: names that become paths stay inside the output folder, and
no output replaces an input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from persam_video.apps.target_file import save_target
from persam_video.atomic import check_component, check_not_overwriting
from persam_video.cli import cli
from persam_video.config import PerSAMConfig
from persam_video.io import write_label_png
from persam_video.persam import Target
from persam_video.synthetic.export import write_davis
from tests.video_factory import make_video, synthetic_labels

SIZE = (48, 64)


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize("name", ["..", ".", "a/b", ".hidden", "x" * 256, "a\0b", " pad"])
def test_unsafe_names_are_refused(name):
    with pytest.raises(ValueError, match="plain file or folder name"):
        check_component(name, "name")
    assert check_component("bear-2", "name") == "bear-2"


def test_outputs_may_not_replace_inputs(tmp_path):
    album = tmp_path / "album"
    album.mkdir()
    (album / "a.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="would overwrite the input"):
        check_not_overwriting([album / "a.png"], [album / "a.png"])
    with pytest.raises(ValueError, match="would overwrite the input"):  # inside a replaced folder
        check_not_overwriting([album / "a.png"], [album])
    with pytest.raises(ValueError, match="would overwrite the input"):  # spelled another way
        check_not_overwriting([album / "a.png"], [tmp_path / "album" / ".." / "album" / "a.png"])
    check_not_overwriting([album / "a.png"], [album / "a_overlay.jpg", tmp_path / "out"])


@pytest.mark.parametrize("hostile", ["..", "."])
def test_davis_sequence_names_cannot_reach_outside_the_output(tmp_path, fake_model, hostile):
    """A sequence list naming '..' or '.' is refused before anything is written or removed:
    the user's files in --out and beside it survive."""
    scratch = tmp_path / "scratch"
    root = scratch / "davis"
    write_davis(root, [1000])
    sets = root / "ImageSets" / "2017" / "val.txt"
    sets.write_text(sets.read_text() + f"{hostile}\n")
    sibling = scratch / "keep" / "notes.txt"
    sibling.parent.mkdir()
    sibling.write_text("mine")
    out = scratch / "out"
    out.mkdir()
    (out / "mine.txt").write_text("mine too")
    before = sorted(str(p.relative_to(scratch)) for p in scratch.rglob("*"))
    result = invoke("davis", "--davis-root", str(root), "--out", str(out), "-q", "--no-eval")
    assert result.exit_code == 2
    assert f"sequence name {hostile!r}" in result.output and "plain file or folder" in (
        result.output
    )
    assert sorted(str(p.relative_to(scratch)) for p in scratch.rglob("*")) == before
    assert sibling.read_text() == "mine" and (out / "mine.txt").read_text() == "mine too"


def test_davis_results_may_not_be_written_over_the_annotations(tmp_path, fake_model):
    root = tmp_path / "davis"
    write_davis(root, [1000])
    annotations = root / "Annotations" / "480p"
    before = {p: p.read_bytes() for p in annotations.rglob("*.png")}
    result = invoke("davis", "--davis-root", str(root), "--out", str(annotations), "-q")
    assert result.exit_code == 2 and "would overwrite the input" in result.output
    assert {p: p.read_bytes() for p in annotations.rglob("*.png")} == before


def test_segment_into_its_own_album_is_refused(tmp_path, fake_model):
    album = tmp_path / "album"
    album.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), np.uint8)).save(album / name)
    photos = {p.name: p.read_bytes() for p in album.iterdir()}
    target = tmp_path / "t.target"
    save_target(
        target, Target(torch.randn(32)), model={"model": "vit_b"}, config=PerSAMConfig(), shots=1
    )
    result = invoke("segment", str(album), "--target", str(target), "--out", str(album))
    assert result.exit_code == 2 and "would overwrite the input" in result.output
    assert {p.name: p.read_bytes() for p in album.iterdir()} == photos
    ok = invoke("segment", str(album), "--target", str(target), "--out", str(tmp_path / "found"))
    assert ok.exit_code == 0, ok.output
    doc = json.loads((tmp_path / "found" / "results.json").read_text())
    assert doc["run"]["model"] == "vit_b" and len(doc["images"]) == 2


def test_track_may_not_replace_its_mask_or_video(tmp_path, fake_model):
    out = tmp_path / "out"
    (out / "masks").mkdir(parents=True)
    mask = out / "masks" / "00000.png"
    write_label_png(mask, synthetic_labels(0, SIZE))
    video = tmp_path / "clip.mp4"
    make_video(video, n_frames=4, size_hw=SIZE)
    mask_bytes = mask.read_bytes()
    result = invoke("track", str(video), "--mask", str(mask), "--out", str(out), "-q")
    assert result.exit_code == 2 and "would overwrite the input" in result.output
    assert mask.read_bytes() == mask_bytes
    named = tmp_path / "o2"
    named.mkdir()
    overlay_named = named / "overlay.mp4"
    make_video(overlay_named, n_frames=4, size_hw=SIZE)
    again = invoke("track", str(overlay_named), "--mask", str(mask), "--out", str(named), "-q")
    assert again.exit_code == 2 and "would overwrite the input" in again.output


def test_personalize_and_frame_may_not_write_over_their_inputs(tmp_path, fake_model):
    image = tmp_path / "ref.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    mask = tmp_path / "m.png"
    labels = np.zeros((32, 32), np.uint8)
    labels[8:20, 8:20] = 1
    write_label_png(mask, labels)
    result = invoke("personalize", str(image), "--mask", str(mask), "--out", str(mask))
    assert result.exit_code == 2 and "would overwrite the input" in result.output
    video = tmp_path / "clip.mp4"
    make_video(video, n_frames=2, size_hw=SIZE)
    frame = invoke("frame", str(video), "0", "-o", str(image))
    assert frame.exit_code == 0  # another file: fine
    frames = tmp_path / "frames"
    frames.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(frames / "000.png")
    over = invoke("frame", str(frames), "0", "-o", str(frames / "000.png"))
    assert over.exit_code == 2 and "would overwrite the input" in over.output


def test_manifest_names_are_checked_with_the_rest(tmp_path):
    video = tmp_path / "clip.mp4"
    make_video(video, n_frames=2, size_hw=SIZE)
    mask = tmp_path / "m.png"
    write_label_png(mask, synthetic_labels(0, SIZE))
    long_name = "n" * 300
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "input,mask,name\n"
        f"{video},{mask},..\n{video},{mask},failures.jsonl\n{video},{mask},{long_name}\n"
    )
    out = tmp_path / "runs"
    result = invoke("batch", str(manifest), "--out", str(out), "--model", "demo", "-q")
    assert result.exit_code == 2
    assert "m.csv:2: output name '..'" in result.output
    assert "m.csv:3: output name 'failures.jsonl' is the name of the batch's own record" in (
        result.output
    )
    assert "m.csv:4: output name" in result.output and "longer than 255 bytes" in result.output
    assert not out.exists()
