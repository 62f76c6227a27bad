"""Reader for datasets in the DAVIS folder layout (DAVIS 2017, and DAVIS 2016 single-object).

Layout read (``<res>`` is the resolution folder, e.g. ``480p``)::

    ROOT/ImageSets/<year>/<subset>.txt      one sequence name per line
    ROOT/JPEGImages/<res>/<seq>/*.jpg       video frames
    ROOT/Annotations/<res>/<seq>/*.png      palette PNGs: 0 background, 1..K objects, 255 void

Year 2016 follows the official single-object DAVIS 2016 evaluation (the ``single_object`` mode of
the official DAVIS Python package, and ``annot > 0`` in the official MATLAB code): every non-zero
annotation value, 255 included, is the one object, with id 1. Its sequence list is
``ImageSets/2016/<subset>.txt`` (as shipped inside the DAVIS 2017 download, whose multi-object
annotations are then merged into one object); the original DAVIS-2016 download, whose
``ImageSets/<res>/<subset>.txt`` lists frame paths instead, is read as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from persam_video.atomic import check_component
from persam_video.io.reader import natural_key
from persam_video.labels import BACKGROUND_ID, VOID_ID, LabelMap, MaskError, describe_size

__all__ = [
    "SUPPORTED_YEARS",
    "DavisDataset",
    "check_first_annotation",
    "first_frame_object_ids",
    "load_annotation",
    "read_annotations",
    "read_label_png",
]

SUPPORTED_YEARS = (2016, 2017)
SINGLE_OBJECT_YEAR = 2016
MULTI_OBJECT_YEAR = 2017
SINGLE_OBJECT_ID = 1
FRAME_SUFFIX = ".jpg"
ANNOTATION_SUFFIX = ".png"
# PIL modes whose pixel values are label indices: palette, 8-bit grayscale and 1-bit.
LABEL_PNG_MODES = ("P", "L", "1")


def read_label_png(path: str | Path) -> np.ndarray:
    """Read a label PNG as its raw pixel values.

    Args:
        path: an 8-bit palette ("P"), 8-bit grayscale ("L") or 1-bit ("1") PNG.

    Returns:
        (H, W) uint8 array: the palette indices (not the colors) for a palette PNG, the gray
        values for a grayscale PNG, 0 or 1 for a 1-bit PNG.
    """
    try:
        with Image.open(path) as image:
            mode = image.mode
            values = np.array(image, dtype=np.uint8) if mode in LABEL_PNG_MODES else None
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise ValueError(f"{path}: cannot read a label PNG ({str(error)[:160]})") from None
    if values is None:
        raise ValueError(
            f"{path}: expected a palette or grayscale PNG of label ids, got PIL mode {mode!r}"
        )
    return values


def load_annotation(path: str | Path, *, single_object: bool = False) -> np.ndarray:
    """Read one annotation: (H, W) uint8 labels, binarized to 0/1 when ``single_object``."""
    labels = read_label_png(path)
    if single_object:
        labels = (labels != BACKGROUND_ID).astype(np.uint8) * SINGLE_OBJECT_ID
    return labels


def read_annotations(
    paths: Sequence[Path], *, single_object: bool = False, where: str = ""
) -> np.ndarray:
    """Read the annotations of one sequence into (T, H, W) uint8 labels.

    Args:
        paths: the annotation PNGs in frame order (at least one).
        single_object: merge every non-zero label into object 1 (DAVIS 2016).
        where: the sequence name, to start error messages with.
    """
    first = load_annotation(paths[0], single_object=single_object)
    labels = np.empty((len(paths), *first.shape), dtype=np.uint8)
    labels[0] = first
    for index, path in enumerate(paths[1:], start=1):
        frame = load_annotation(path, single_object=single_object)
        if frame.shape != first.shape:
            raise ValueError(
                f"{where}: annotation {Path(path).name} is {frame.shape}, "
                f"the first one is {first.shape}"
            )
        labels[index] = frame
    return labels


def first_frame_object_ids(first: np.ndarray) -> list[int]:
    """Object ids ``1..K`` evaluated in a sequence, K the largest non-void first-frame label.

    As the official semi-supervised evaluation counts them: an id missing from the first frame
    but below K is still an object; an id above K appearing later is ignored. Empty when the
    first annotation has no object.
    """
    labels = first[first != VOID_ID]
    max_id = int(labels.max()) if labels.size else BACKGROUND_ID
    return list(range(1, max_id + 1))


def looks_single_object(first: np.ndarray) -> bool:
    """True when raw first-frame labels hold only 0 and 255, with some 255: under DAVIS 2017
    that is background and void, no object; a DAVIS 2016 annotation (object = 255) reads so."""
    values = np.unique(first)
    return VOID_ID in values and set(values.tolist()) <= {BACKGROUND_ID, VOID_ID}


def check_first_annotation(first: np.ndarray, where: str, *, single_object: bool) -> None:
    """Refuse, under DAVIS 2017 rules, a first annotation that looks like DAVIS 2016's.

    Args:
        first: raw (H, W) labels of the first annotation (as :func:`read_label_png` gives them).
        where: the sequence name, to start the message with.
        single_object: True under DAVIS 2016 rules, where such an annotation is one object.

    Raises:
        ValueError: ``first`` holds only 0 and 255 while ``single_object`` is False.
    """
    if not single_object and looks_single_object(first):
        raise ValueError(
            f"{where}: the first annotation holds only 0 and 255, which DAVIS 2017 reads as "
            "background and void (no object): these look like DAVIS 2016 single-object "
            "annotations; use --year 2016"
        )


class DavisDataset:
    """Sequences, frames and annotations of one DAVIS subset.

    Frames and annotations are sorted by file name in natural order (``2.jpg`` before
    ``10.jpg``, the order ``track`` reads a folder of frames in; for DAVIS's zero-padded names
    it is plain name order, as the official code sorts). The directory listing is checked when
    the dataset is built; images are read only on request.

    Args:
        root: DAVIS folder holding ``ImageSets``, ``JPEGImages`` and ``Annotations``.
        subset: name of the sequence list, e.g. "train" or "val".
        year: 2017 (multi-object) or 2016 (single object, see the module docstring).
        resolution: resolution folder, e.g. "480p" or "Full-Resolution".
    """

    def __init__(
        self,
        root: str | Path,
        subset: str = "val",
        year: int | str = 2017,
        resolution: str = "480p",
    ) -> None:
        self.root = Path(root)
        self.subset = subset
        self.year = _parse_year(year)
        self.resolution = resolution
        if not self.root.is_dir():
            raise FileNotFoundError(f"DAVIS root not found: {self.root}")
        self.frames_dir = self.root / "JPEGImages" / resolution
        self.annotations_dir = self.root / "Annotations" / resolution
        self.sequences: list[str] = self._read_sequence_list()
        self._frames: dict[str, list[Path]] = {}
        self._annotations: dict[str, list[Path]] = {}
        for seq in self.sequences:
            self._frames[seq] = self._list_files(self.frames_dir, seq, FRAME_SUFFIX, "frames")
            self._annotations[seq] = self._list_files(
                self.annotations_dir, seq, ANNOTATION_SUFFIX, "annotations"
            )

    @property
    def single_object(self) -> bool:
        """True when every sequence has one object (id 1) made of all non-zero labels."""
        return self.year == SINGLE_OBJECT_YEAR

    def __len__(self) -> int:
        return len(self.sequences)

    def __repr__(self) -> str:
        return (
            f"DavisDataset(root={str(self.root)!r}, subset={self.subset!r}, year={self.year}, "
            f"resolution={self.resolution!r}, sequences={len(self.sequences)})"
        )

    def frame_paths(self, seq: str) -> list[Path]:
        """JPEG frames of ``seq``, in natural name order."""
        return list(self._frames[self._check_sequence(seq)])

    def annotation_paths(self, seq: str) -> list[Path]:
        """Annotation PNGs of ``seq``, in natural name order."""
        return list(self._annotations[self._check_sequence(seq)])

    def sequence_folders(self) -> list[Path]:
        """The folders this set's frames and annotations are read from, per sequence."""
        return [
            folder / seq
            for seq in self.sequences
            for folder in (self.frames_dir, self.annotations_dir)
        ]

    def frame_names(self, seq: str) -> list[str]:
        """Annotation file names without extension, e.g. "00000": results use the same names."""
        return [path.stem for path in self.annotation_paths(seq)]

    def load_annotation(self, path: str | Path) -> np.ndarray:
        """Read one annotation of this dataset: (H, W) uint8 labels, binarized for 2016."""
        return load_annotation(path, single_object=self.single_object)

    def load_annotations(self, seq: str) -> np.ndarray:
        """All annotations of ``seq``.

        Returns:
            (T, H, W) uint8 labels: 0 background, 1..K objects, 255 void (2017); 0 or 1 (2016).
        """
        return read_annotations(
            self.annotation_paths(seq), single_object=self.single_object, where=seq
        )

    def first_annotation(self, seq: str) -> np.ndarray:
        """(H, W) uint8 labels of the first annotated frame: the one-shot reference."""
        return self.load_annotation(self.annotation_paths(seq)[0])

    def object_ids(self, seq: str) -> list[int]:
        """Object ids evaluated in ``seq``, as the official semi-supervised evaluation counts them.

        DAVIS 2017: ``1..K`` with K the largest non-void label of the first annotation (see
        :func:`first_frame_object_ids`). DAVIS 2016: ``[1]``. Empty when the first annotation
        has no object.
        """
        return first_frame_object_ids(self.first_annotation(seq))

    def check_first_annotation(self, seq: str) -> None:
        """Refuse a DAVIS 2016-style first annotation (only 0 and 255) read as DAVIS 2017."""
        first = read_label_png(self.annotation_paths(seq)[0])
        check_first_annotation(first, seq, single_object=self.single_object)

    def reference(self, seq: str) -> LabelMap:
        """The first annotation of ``seq`` checked as a tracking reference.

        Raises:
            ValueError: naming the sequence, when the annotation looks like DAVIS 2016's under
                2017 rules, holds no object, or differs in size from the first frame.
        """
        self.check_first_annotation(seq)
        path = self.annotation_paths(seq)[0]
        try:
            reference = LabelMap.check(self.load_annotation(path))
        except MaskError as exc:
            raise MaskError(f"{seq}: first annotation {path.name}: {exc}") from None
        with Image.open(self.frame_paths(seq)[0]) as frame:
            frame_size = (frame.height, frame.width)
        if reference.size != frame_size:
            raise MaskError(
                f"{seq}: first annotation {path.name} is {describe_size(reference.size)} but "
                f"the frames are {describe_size(frame_size)} (WxH)"
            )
        return reference

    def check_references(self) -> None:
        """Check the first annotation of every sequence (:meth:`reference`) before any work."""
        for seq in self.sequences:
            self.reference(seq)

    def _check_sequence(self, seq: str) -> str:
        if seq not in self._frames:
            raise ValueError(f"unknown sequence {seq!r} for DAVIS {self.year} {self.subset}")
        return seq

    def _read_sequence_list(self) -> list[str]:
        list_path = self.root / "ImageSets" / str(self.year) / f"{self.subset}.txt"
        frame_list_path = self.root / "ImageSets" / self.resolution / f"{self.subset}.txt"
        if list_path.is_file():
            names = [line.strip() for line in list_path.read_text().splitlines()]
        elif self.single_object and frame_list_path.is_file():
            list_path = frame_list_path
            names = [_sequence_from_frame_line(line) for line in list_path.read_text().splitlines()]
        else:
            raise FileNotFoundError(f"DAVIS sequence list not found: {list_path}")
        # Blank lines are skipped; a repeated name is kept once, at its first position.
        sequences = list(dict.fromkeys(name for name in names if name))
        if not sequences:
            raise ValueError(f"DAVIS sequence list is empty: {list_path}")
        for name in sequences:  # each becomes a folder that runs write and replace
            check_component(name, f"{list_path.name}: sequence name")
        return sequences

    @staticmethod
    def _list_files(folder: Path, seq: str, suffix: str, kind: str) -> list[Path]:
        seq_dir = folder / seq
        found = seq_dir.glob(f"*{suffix}") if seq_dir.is_dir() else ()
        paths = sorted(found, key=lambda path: natural_key(path.name))
        if not paths:
            raise FileNotFoundError(f"sequence {seq!r} is listed but has no {kind} in {seq_dir}")
        return paths


def _parse_year(year: int | str) -> int:
    try:
        value = int(year)
    except (TypeError, ValueError):
        value = None
    if value not in SUPPORTED_YEARS:
        raise ValueError(f"DAVIS year must be one of {SUPPORTED_YEARS}, got {year!r}")
    return value


def _sequence_from_frame_line(line: str) -> str:
    """Sequence name from a DAVIS-2016 frame list line "/JPEGImages/480p/bear/00000.jpg ..."."""
    fields = line.split()
    return Path(fields[0]).parent.name if fields else ""
