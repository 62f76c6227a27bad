"""Write procedural clips to disk: a DAVIS-layout dataset, or an mp4 with its first mask.

DAVIS layout (what ``persam-video davis`` and ``persam-video eval`` read)::

    ROOT/JPEGImages/480p/<seq>/00000.jpg ...
    ROOT/Annotations/480p/<seq>/00000.png ...   palette PNGs, 0 background, 1..K objects
    ROOT/ImageSets/2017/<subset>.txt            one sequence name per line
    ROOT/db_info.yml                            (write_clip_set) each sequence's attributes

``db_info.yml`` follows the spirit of DAVIS 2016's file of that name: the attribute list, then one
entry per sequence with its ``name``, ``attributes``, ``num_frames`` and where it came from
(``family``, ``split``, ``seed``); :func:`read_sequence_attributes` reads it back.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from persam_video.io import VideoWriter, write_label_png
from persam_video.progress import progress_bar
from persam_video.synthetic.clips import Clip, ClipInfo, clip_info, iter_clip
from persam_video.synthetic.families import (
    ATTRIBUTES,
    FAMILIES,
    family_clip_info,
    iter_family_clip,
)

RESOLUTION = "480p"
YEAR = "2017"
JPEG_QUALITY = 95
FRAME_NAME = "{:05d}"
DB_INFO = "db_info.yml"
#: The pseudo-family of :func:`write_clip_set` meaning :func:`make_clip`'s mixed clips.
MIXED_FAMILY = "mixed"


def write_davis(
    root: str | Path,
    seeds: Iterable[int],
    *,
    split: str = "test",
    subset: str = "val",
    progress: bool = False,
) -> list[str]:
    """Write the clips of ``seeds`` (of ``split``) as a DAVIS-layout dataset; return their names.

    Frames are JPEG (quality 95) like DAVIS; annotations are palette PNGs of every frame.
    """
    root = Path(root)
    names = []
    for seed in progress_bar(list(seeds), desc="writing clips", unit="clip", enabled=progress):
        name = clip_info(seed, split=split).name
        _write_sequence(root, name, iter_clip(seed, split=split))
        names.append(name)
    _write_image_set(root, subset, names)
    return names


def _write_sequence(root: Path, name: str, pairs: Iterator[tuple[np.ndarray, np.ndarray]]) -> None:
    """Frames as JPEG and label maps as palette PNGs of one sequence."""
    images = root / "JPEGImages" / RESOLUTION / name
    annotations = root / "Annotations" / RESOLUTION / name
    images.mkdir(parents=True, exist_ok=True)
    annotations.mkdir(parents=True, exist_ok=True)
    for index, (frame, labels) in enumerate(pairs):
        Image.fromarray(frame).save(
            images / f"{FRAME_NAME.format(index)}.jpg", quality=JPEG_QUALITY
        )
        write_label_png(annotations / f"{FRAME_NAME.format(index)}.png", labels)


def _write_image_set(root: Path, subset: str, names: list[str]) -> None:
    sets = root / "ImageSets" / YEAR
    sets.mkdir(parents=True, exist_ok=True)
    (sets / f"{subset}.txt").write_text("".join(f"{n}\n" for n in names), encoding="utf-8")


def clip_set_info(
    family: str, seed: int, *, split: str = "test", n_frames: int | None = None
) -> ClipInfo:
    """What :func:`write_clip_set` writes for ``(family, seed)``: a family clip, or with
    ``MIXED_FAMILY`` a :func:`make_clip` clip (``n_frames`` None: its own drawn length)."""
    if family == MIXED_FAMILY:
        return clip_info(seed, split=split, n_frames=n_frames)
    return family_clip_info(family, seed, split=split, n_frames=n_frames)


def write_clip_set(
    root: str | Path,
    clips: Iterable[tuple[str, int]],
    *,
    split: str = "test",
    n_frames: int | None = None,
    subset: str = "val",
    progress: bool = False,
) -> list[ClipInfo]:
    """Write ``(family, seed)`` clips as a DAVIS-layout dataset with their attributes.

    Arguments:
      root (str | Path): dataset folder (created).
      clips (Iterable[tuple[str, int]]): ``(family, seed)`` pairs; a family of ``FAMILIES`` or
        ``MIXED_FAMILY`` for :func:`make_clip`'s mixed, untagged clips.
      split (str): the split of every seed (benchmarks: ``"test"``).
      n_frames (int | None): clip length (None: each generator's default).
      subset (str): the image set's name.
      progress (bool): show a progress bar.

    Returns:
      (list[ClipInfo]): the clips written, in order; ``ROOT/db_info.yml`` lists their attributes.
    """
    root = Path(root)
    clips = list(clips)
    unknown = sorted({family for family, _ in clips} - {*FAMILIES, MIXED_FAMILY})
    if unknown:
        raise ValueError(f"unknown clip families {unknown}; known: {[*FAMILIES, MIXED_FAMILY]}")
    infos = []
    for family, seed in progress_bar(clips, desc="writing clips", unit="clip", enabled=progress):
        info = clip_set_info(family, seed, split=split, n_frames=n_frames)
        if family == MIXED_FAMILY:
            pairs = iter_clip(seed, split=split, n_frames=n_frames)
        else:
            pairs = iter_family_clip(family, seed, split=split, n_frames=n_frames)
        _write_sequence(root, info.name, pairs)
        infos.append(info)
    _write_image_set(root, subset, [info.name for info in infos])
    db_info = {
        "attributes": list(ATTRIBUTES),
        "sequences": [
            {
                "name": info.name,
                "attributes": list(info.attributes),
                "num_frames": info.n_frames,
                "family": info.family or MIXED_FAMILY,
                "split": info.split,
                "seed": info.seed,
            }
            for info in infos
        ],
    }
    (root / DB_INFO).write_text(yaml.safe_dump(db_info, sort_keys=False), encoding="utf-8")
    return infos


def read_sequence_attributes(root: str | Path) -> dict[str, tuple[str, ...]]:
    """Sequence name -> its attribute tags, from ``ROOT/db_info.yml`` (see
    :func:`write_clip_set`); an empty dict when the dataset has no such file."""
    path = Path(root) / DB_INFO
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {
        str(entry["name"]): tuple(str(a) for a in entry.get("attributes") or ())
        for entry in data.get("sequences") or ()
    }


def write_clip_video(clip: Clip, folder: str | Path) -> tuple[Path, Path]:
    """Write ``clip`` as ``folder/input.mp4`` and ``folder/first_mask.png``; return both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    video, mask = folder / "input.mp4", folder / "first_mask.png"
    with VideoWriter(video, fps=clip.fps, size_hw=clip.size_hw) as writer:
        for frame in clip.frames:
            writer.write(frame)
    write_label_png(mask, clip.labels[0])
    return video, mask
