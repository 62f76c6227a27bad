"""Write procedural clips to disk: a DAVIS-layout dataset, or an mp4 with its first mask.

DAVIS layout (what ``persam-video davis`` and ``persam-video eval`` read)::

    ROOT/JPEGImages/480p/<seq>/00000.jpg ...
    ROOT/Annotations/480p/<seq>/00000.png ...   palette PNGs, 0 background, 1..K objects
    ROOT/ImageSets/2017/<subset>.txt            one sequence name per line
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from PIL import Image

from persam_video.io import VideoWriter, write_label_png
from persam_video.progress import progress_bar
from persam_video.synthetic.clips import Clip, clip_info, iter_clip

RESOLUTION = "480p"
YEAR = "2017"
JPEG_QUALITY = 95
FRAME_NAME = "{:05d}"


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
        images = root / "JPEGImages" / RESOLUTION / name
        annotations = root / "Annotations" / RESOLUTION / name
        images.mkdir(parents=True, exist_ok=True)
        annotations.mkdir(parents=True, exist_ok=True)
        for index, (frame, labels) in enumerate(iter_clip(seed, split=split)):
            Image.fromarray(frame).save(
                images / f"{FRAME_NAME.format(index)}.jpg", quality=JPEG_QUALITY
            )
            write_label_png(annotations / f"{FRAME_NAME.format(index)}.png", labels)
        names.append(name)
    sets = root / "ImageSets" / YEAR
    sets.mkdir(parents=True, exist_ok=True)
    (sets / f"{subset}.txt").write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    return names


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
