"""Official SAM-family checkpoints: registry, cache directory, verified downloads.

Checkpoints are downloaded on first use into the cache directory (``$PERSAM_VIDEO_CACHE``, by
default ``$XDG_CACHE_HOME/persam-video`` or ``~/.cache/persam-video``): to a temporary file, with a
progress bar, then checked for size and SHA-256 and only then renamed into place, so a file under
its final name is always complete and verified. MobileSAM's checkpoint is kept in git in its
official repository: it is pinned by its git blob id there (the SHA-1 of ``blob <size>\0`` and
its bytes, which fixes both the size and the content), read from the repository's tree at the
pinned commit. HQ-SAM's checkpoints (Hugging Face ``lkeab/hq-sam``) are pinned by the digests
that projects downloading and verifying them publish: SHA-256 for ``sam_hq_vit_h`` and
``sam_hq_vit_tiny`` (Intel's OpenVINO training extensions' model table), MD5 for
``sam_hq_vit_b`` and ``sam_hq_vit_l`` (IOPaint's model table; no SHA-256 of them is published
that we know of). The SHA-256 of every file in use is recorded in the run's results.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from persam_video.atomic import atomic_file
from persam_video.progress import progress_bar

CACHE_ENV = "PERSAM_VIDEO_CACHE"
DOWNLOAD_CHUNK_BYTES = 1 << 20
DOWNLOAD_TIMEOUT_S = 30.0
#: What a failed download suggests besides downloading the file by hand (commands that load a
#: model take ``--checkpoint``).
OR_ELSE = ", or pass --checkpoint FILE"
_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything"
#: ChaoningZhang/MobileSAM at the commit whose tree pins ``weights/mobile_sam.pt``.
_HQ_SAM_URL = "https://huggingface.co/lkeab/hq-sam/resolve/main"
_MOBILE_SAM_URL = (
    "https://raw.githubusercontent.com/ChaoningZhang/MobileSAM/"
    "34bbbfdface3c18e5221aa7de6032d7220c6c6a1/weights/mobile_sam.pt"
)


class WeightsError(RuntimeError):
    """A checkpoint cannot be found, downloaded, verified or loaded."""


@dataclass(frozen=True)
class Checkpoint:
    """An official checkpoint: where to get it and how to verify it (by size and SHA-256, or
    by its git blob id in the official repository when that is what is published)."""

    name: str
    url: str
    #: Bytes and SHA-256, or None where they are not published.
    size: int | None
    sha256: str | None
    #: The file's git blob id in its official repository (hex SHA-1 of ``blob <size>\0`` +
    #: its bytes), or None.
    git_blob: str | None = None
    #: The file's MD5, where that is the only digest published, or None.
    md5: str | None = None

    def __post_init__(self) -> None:
        if self.sha256 is None and self.git_blob is None and self.md5 is None:
            raise ValueError(f"checkpoint {self.name} pins no digest")

    @property
    def pinned_by(self) -> str:
        """The strongest digest pinned: ``SHA-256``, ``git blob`` or ``MD5``."""
        if self.sha256 is not None:
            return "SHA-256"
        return "git blob" if self.git_blob is not None else "MD5"

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


CHECKPOINTS: dict[str, Checkpoint] = {
    "vit_h": Checkpoint(
        "vit_h",
        f"{_BASE_URL}/sam_vit_h_4b8939.pth",
        2_564_550_879,
        "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
    ),
    "vit_l": Checkpoint(
        "vit_l",
        f"{_BASE_URL}/sam_vit_l_0b3195.pth",
        1_249_524_607,
        "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
    ),
    "vit_b": Checkpoint(
        "vit_b",
        f"{_BASE_URL}/sam_vit_b_01ec64.pth",
        375_042_383,
        "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
    ),
    "mobile_sam": Checkpoint(
        "mobile_sam",
        _MOBILE_SAM_URL,
        None,
        None,
        git_blob="7ef2d090979fd9853adf17b7a99c8b94a1c5a6a7",
    ),
    "sam_hq_vit_b": Checkpoint(
        "sam_hq_vit_b",
        f"{_HQ_SAM_URL}/sam_hq_vit_b.pth",
        None,
        None,
        md5="c6b8953247bcfdc8bb8ef91e36a6cacc",
    ),
    "sam_hq_vit_l": Checkpoint(
        "sam_hq_vit_l",
        f"{_HQ_SAM_URL}/sam_hq_vit_l.pth",
        None,
        None,
        md5="08947267966e4264fb39523eccc33f86",
    ),
    "sam_hq_vit_h": Checkpoint(
        "sam_hq_vit_h",
        f"{_HQ_SAM_URL}/sam_hq_vit_h.pth",
        None,
        "a7ac14a085326d9fa6199c8c698c4f0e7280afdbb974d2c4660ec60877b45e35",
    ),
    "sam_hq_vit_tiny": Checkpoint(
        "sam_hq_vit_tiny",
        f"{_HQ_SAM_URL}/sam_hq_vit_tiny.pth",
        None,
        "0f32c075ccdd870ae54db2f7630e7a0878ede5a2b06d05d6fe02c65a82fb7196",
    ),
}


def cache_dir() -> Path:
    """The folder downloaded checkpoints are kept in."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "persam-video"


def get_checkpoint(name: str) -> Checkpoint:
    """The registry entry of ``name``; a :class:`WeightsError` lists the known names otherwise."""
    try:
        return CHECKPOINTS[name]
    except KeyError:
        raise WeightsError(
            f"unknown SAM checkpoint {name!r}; known: {', '.join(CHECKPOINTS)}"
        ) from None


def checkpoint_path(name: str) -> Path:
    """Where the checkpoint ``name`` is (or will be) stored in the cache."""
    return cache_dir() / get_checkpoint(name).filename


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(DOWNLOAD_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _digest_of(path: str | Path, digest: hashlib._Hash, *, blob: bool = False) -> str:
    if blob:  # git hashes ``blob <size>\0`` before the bytes
        digest.update(f"blob {Path(path).stat().st_size}\0".encode())
    with open(path, "rb") as f:
        while chunk := f.read(DOWNLOAD_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def git_blob_of(path: str | Path) -> str:
    """The git blob id of a file: hex SHA-1 of ``blob <size>\0`` followed by its bytes."""
    return _digest_of(path, hashlib.sha1(usedforsecurity=False), blob=True)


def md5_of(path: str | Path) -> str:
    """Hex MD5 of a file (only to compare with a published MD5)."""
    return _digest_of(path, hashlib.md5(usedforsecurity=False))


def mismatch(path: str | Path, checkpoint: Checkpoint) -> str | None:
    """Why ``path`` is not the checkpoint's file (its size, then the strongest digest pinned:
    SHA-256, git blob id or MD5), or None when it is, byte for byte."""
    size = Path(path).stat().st_size
    if checkpoint.size is not None and size != checkpoint.size:
        return f"{size:,} bytes, the {checkpoint.name} checkpoint has {checkpoint.size:,}"
    for label, expected, digest_of in (
        ("SHA-256", checkpoint.sha256, sha256_of),
        ("git blob id", checkpoint.git_blob, git_blob_of),
        ("MD5", checkpoint.md5, md5_of),
    ):
        if expected is not None:
            found = digest_of(path)
            if found != expected:
                return f"{label} {found}, the {checkpoint.name} checkpoint has {expected}"
            return None
    raise AssertionError("unreachable: Checkpoint pins a digest")


def is_official(path: str | Path, checkpoint: Checkpoint) -> bool:
    """Whether ``path`` is the checkpoint's file, byte for byte."""
    return mismatch(path, checkpoint) is None


def verify_file(path: str | Path, checkpoint: Checkpoint) -> None:
    """Raise :class:`WeightsError` unless ``path`` is the checkpoint's file (:func:`mismatch`)."""
    reason = mismatch(path, checkpoint)
    if reason is not None:
        raise WeightsError(f"{path} has {reason}")


def ensure_checkpoint(name: str, *, progress: bool = True, or_else: str = OR_ELSE) -> Path:
    """The cached checkpoint ``name``, downloading and verifying it first if needed.

    ``or_else`` ends the message of a failed download (what else the user can do).
    """
    checkpoint = get_checkpoint(name)
    path = checkpoint_path(name)
    if path.is_file() and (
        path.stat().st_size == checkpoint.size
        or (checkpoint.size is None and is_official(path, checkpoint))
    ):  # files of the pinned size were verified when downloaded
        return path
    return download(checkpoint, path, progress=progress, or_else=or_else)


def download(
    checkpoint: Checkpoint, dest: str | Path, *, progress: bool = True, or_else: str = OR_ELSE
) -> Path:
    """Download ``checkpoint`` to ``dest`` through a temporary file; verify, then rename.

    Works for ``http(s)://`` and ``file://`` URLs. On any failure nothing is left under ``dest``
    and a one-line :class:`WeightsError` says what to download and where to put it (and
    ``or_else``, what else can be done).
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsError(f"cannot create the cache folder {dest.parent}: {exc.strerror}") from exc
    try:
        with atomic_file(dest) as partial:
            _fetch(checkpoint, partial, progress=progress)
            problem = mismatch(partial, checkpoint)
            if problem is not None:
                raise WeightsError(
                    f"the download of {checkpoint.name} from {checkpoint.url} is corrupt: it "
                    f"has {problem}"
                )
    except (OSError, urllib.error.URLError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise WeightsError(
            f"cannot download the {checkpoint.name} checkpoint from {checkpoint.url} ({reason}); "
            f"download it yourself and save it as {dest}{or_else}"
        ) from exc
    return dest


def _fetch(checkpoint: Checkpoint, target: Path, *, progress: bool) -> None:
    """Stream the URL into ``target``."""
    with urllib.request.urlopen(checkpoint.url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        total = int(response.headers.get("Content-Length") or checkpoint.size or 0) or None
        with (
            open(target, "wb") as out,
            progress_bar(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=f"downloading {checkpoint.filename}",
                enabled=progress,
            ) as bar,
        ):
            while chunk := response.read(DOWNLOAD_CHUNK_BYTES):
                out.write(chunk)
                bar.update(len(chunk))
