"""Safe outputs: nothing half-written looks finished, nothing is written through a link, and
nothing a run did not make is ever replaced or deleted.

Temporaries. Every temporary lives in a fresh *staging folder* inside the folder of its final
path: ``out/.persam-video-tmp-PID-XXXXXXXX/overlay.mp4`` for ``out/overlay.mp4``. The staging
folder is made by :func:`tempfile.mkdtemp` (a new name, created exclusively, mode 0700), so a
link planted under any name cannot redirect a write, and it holds a *marker* file (created with
``O_EXCL | O_NOFOLLOW``) naming this tool and the process. ``os.replace`` then moves the
temporary into place in one step (a link at the final name is replaced, never followed), so a
file or folder under its final name is always complete.

Sweeping. The next run into a folder removes staging folders whose marker names a process that
is gone (SIGKILL, power loss): a folder is removed only when it carries this tool's marker,
never for its name alone.

Ownership. An output folder records the names its runs wrote in ``.persam-video.json`` (with
the command that wrote them). A run may replace or remove only names recorded there; anything
else under one of its output names, or a folder recorded as another command's, is refused
before any work (:func:`claim_outputs`).

- :func:`temp_path`, :func:`place`, :func:`discard`: one temporary, its move into place, its
  removal.
- :func:`atomic_file`, :func:`atomic_folder`, :func:`write_text`: a whole file or folder.
- :func:`commit`: move several finished temporaries into place (``results.json`` last).
- :func:`run_folder`: an output folder for one run: created if needed, locked, swept, claimed.
- :func:`folder_lock`: one writer per output folder at a time.
- :func:`check_not_overwriting`: no output over an input, nor inside an input folder.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

try:  # POSIX; elsewhere folder_lock does not lock (documented)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: Mode of a new file before the umask, and the umask assumed where it cannot be read.
FILE_MODE = 0o666
DEFAULT_UMASK = 0o022
#: The name this tool writes into its markers and records.
TOOL = "persam-video"
#: Prefix of a staging folder (``out/.persam-video-tmp-PID-XXXXXXXX``).
STAGING_PREFIX = ".persam-video-tmp-"
#: The marker file inside every folder this tool makes to remove later.
MARKER_NAME = ".persam-video-marker"
#: The lock file of an output folder (hidden, removed when the run ends).
LOCK_NAME = ".persam-video.lock"
#: The record of an output folder's outputs (which names its runs wrote, and which command).
MANIFEST_NAME = ".persam-video.json"
MANIFEST_FORMAT = "persam-video outputs"
#: Largest marker or record read (a bigger file is not one of ours).
MAX_RECORD_BYTES = 1 << 20
#: Longest file name most file systems take (bytes of UTF-8).
MAX_NAME_BYTES = 255
#: Characters that make a name a glob pattern (refused in names taken from the user's data).
GLOB_CHARACTERS = "*?[]"
#: open() flags of a file this tool creates in a user's folder: never through a link.
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)


def check_component(name: str, what: str) -> str:
    """``name`` if it can be one file or folder name inside an output folder, else ValueError.

    Names that come from the user's data (DAVIS sequence names, manifest names) become paths
    that are written and replaced: a name such as ``..`` or ``a/b`` would reach outside the
    output folder, a hidden name (``.x``) could be taken for one of our own files, and a glob
    pattern (``*``) could be matched against other names.
    """
    problem = None
    if not name or name in (".", ".."):
        problem = "is empty or a relative reference"
    elif "/" in name or "\\" in name or "\0" in name:
        problem = "holds a path separator or a NUL character"
    elif name.startswith("."):
        problem = "starts with '.' (hidden names are kept for persam-video's own files)"
    elif name != name.strip():
        problem = "starts or ends with white space"
    elif any(char in name for char in GLOB_CHARACTERS):
        problem = f"holds a pattern character ({GLOB_CHARACTERS})"
    elif len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        problem = f"is longer than {MAX_NAME_BYTES} bytes"
    if problem:
        raise ValueError(f"{what} {name[:80]!r} {problem}: it must be a plain file or folder name")
    return name


def check_not_overwriting(
    inputs: Iterable[str | os.PathLike[str]], outputs: Iterable[str | os.PathLike[str]]
) -> None:
    """Refuse (ValueError) an output that is an input, holds one (a folder above it), or lies
    inside an input folder (``track frames --out frames/out``): one rule for every command.

    Paths are compared resolved (links followed), so an output spelled differently from the
    input is still caught.
    """
    written = [Path(out).resolve() for out in outputs]
    for item in inputs:
        source = Path(item).resolve()
        for out in written:
            if source == out or out in source.parents or source in out.parents:
                raise ValueError(
                    f"the output {out} would overwrite the input {item} (or sit inside it): "
                    "choose an output outside the inputs"
                )


def check_writable_file(path: str | os.PathLike[str]) -> Path:
    """``path`` if a file can be written there (its folder exists and is writable, and it is
    not a folder), else ValueError: checked before the work, not after."""
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name")
    if not folder.is_dir():
        raise ValueError(f"cannot write {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {path}: the folder {folder} is not writable")
    return path


def check_out_dir(out_dir: str | os.PathLike[str]) -> Path:
    """Check ``out_dir`` can be used as an output folder, without creating anything: a
    writable folder, or not there yet under a writable folder."""
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"output path {path} exists and is not a folder")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"output path {path} is inside {existing}, which is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write to the output folder {existing}")
    return path


def prepare_out_dir(out_dir: str | os.PathLike[str]) -> Path:
    """Create ``out_dir`` if needed (after :func:`check_out_dir`)."""
    path = check_out_dir(out_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create the output folder {path}: {exc.strerror}") from None
    return path


# -- marked folders: staging folders and the app's session folders ----------------------------


def make_marked_folder(parent: str | os.PathLike[str], prefix: str) -> Path:
    """A fresh folder in ``parent`` (``prefix`` + this process's id + random, mode 0700)
    holding this tool's marker with this process's id, so that :func:`remove_stale_marked` may
    remove it once the process is gone. The marker is written with one unbuffered write; a
    process killed between creating the marker and writing it leaves an empty marker, which
    the id in the folder's name then stands for."""
    folder = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))
    payload = json.dumps({"tool": TOOL, "pid": os.getpid()}).encode("utf-8")
    try:
        fd = os.open(folder / MARKER_NAME, _CREATE_FLAGS, 0o600)
        try:
            os.write(fd, payload)
        finally:
            os.close(fd)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def _unwritten_marker_pid(folder: Path, prefix: str) -> int | None:
    """The process id in the name of a folder :func:`make_marked_folder` made whose process died
    before writing its marker: a real folder of mode 0700 holding nothing but an empty marker
    (a plain file) and named ``prefix`` + id + ``-`` + random; None for anything else."""
    try:
        info = os.lstat(folder)
        if not stat.S_ISDIR(info.st_mode) or stat.S_IMODE(info.st_mode) != 0o700:
            return None
        if os.listdir(folder) != [MARKER_NAME]:
            return None
        marker = os.lstat(folder / MARKER_NAME)
    except OSError:
        return None
    if not stat.S_ISREG(marker.st_mode) or marker.st_size != 0:
        return None
    digits, dash, _ = folder.name[len(prefix) :].partition("-")
    return int(digits) if dash and digits.isdigit() else None


def marker_pid(folder: str | os.PathLike[str]) -> int | None:
    """The process id in the marker of a folder this tool made; None for anything else (a
    link, a folder without a marker, a marker that is a link or not ours)."""
    folder = Path(folder)
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return None
        record = _read_record(folder / MARKER_NAME)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("tool") != TOOL:
        return None
    pid = record.get("pid")
    return pid if isinstance(pid, int) and not isinstance(pid, bool) else None


def remove_stale_marked(parent: str | os.PathLike[str], prefix: str) -> list[Path]:
    """Remove the folders of ``parent`` named ``prefix...`` that carry this tool's marker (or,
    from a process killed while making it, its empty marker: see :func:`make_marked_folder`)
    and whose process is gone; return them. Nothing else is touched."""
    removed = []
    try:
        entries = sorted(Path(parent).iterdir())
    except OSError:
        return []
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        pid = marker_pid(entry)
        if pid is None:
            pid = _unwritten_marker_pid(entry, prefix)
        if pid is not None and pid != os.getpid() and not pid_alive(pid):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the staging folders that dead runs left in ``folder``; return them."""
    return remove_stale_marked(folder, STAGING_PREFIX)


def _read_record(path: Path) -> object:
    """A small JSON file read without following a link (ValueError if it is not one)."""
    fd = os.open(path, _READ_FLAGS)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ValueError(f"{path} is not a plain file")
        data = handle.read(MAX_RECORD_BYTES + 1)
    if len(data) > MAX_RECORD_BYTES:
        raise ValueError(f"{path} is too large")
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ValueError(f"{path} is not JSON") from None


# -- temporaries ------------------------------------------------------------------------------


def temp_path(final: str | os.PathLike[str], *, folder: bool = False) -> Path:
    """A temporary path for ``final``, in a fresh staging folder beside it (nothing is created
    at the path itself: write the file, or make the folder, there).

    ``out/overlay.mp4`` -> ``out/.persam-video-tmp-PID-XXXXXXXX/overlay.mp4`` (the name is kept, so
    FFmpeg and Pillow pick the format from it). Move it into place with :func:`place` or
    :func:`commit`; drop it with :func:`discard`. ``folder`` is accepted for readability: a
    folder's temporary is named the same way.
    """
    del folder
    final = Path(final)
    return make_marked_folder(final.parent, STAGING_PREFIX) / final.name


def _release(temporary: Path) -> None:
    """Remove the staging folder of ``temporary`` (once it was moved out or is discarded)."""
    staging = temporary.parent
    if staging.name.startswith(STAGING_PREFIX) and marker_pid(staging) == os.getpid():
        shutil.rmtree(staging, ignore_errors=True)


def discard(temporary: str | os.PathLike[str]) -> None:
    """Delete a temporary from :func:`temp_path` and its staging folder (nothing happens when
    it is already gone)."""
    temporary = Path(temporary)
    remove_quietly(temporary)
    _release(temporary)


def place(temporary: str | os.PathLike[str], final: str | os.PathLike[str]) -> None:
    """Move a finished temporary into place in one step. A link at ``final`` is replaced, not
    followed; a folder there is replaced by a folder (callers own ``final``: see
    :func:`claim_outputs`)."""
    temporary, final = Path(temporary), Path(final)
    if temporary.is_dir() and not temporary.is_symlink():
        remove_quietly(final)
    else:
        os.chmod(temporary, file_mode())
        if final.is_dir() and not final.is_symlink():
            remove_quietly(final)
    os.replace(temporary, final)
    _release(temporary)


def remove_quietly(path: str | os.PathLike[str]) -> None:
    """Delete a file or folder if it exists (a link is removed itself, never what it points
    to; nothing happens when it is already gone)."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
        return
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def file_mode() -> int:
    """The mode a new file gets in this process (0o666 less the umask), read without changing
    the umask."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return FILE_MODE & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return FILE_MODE & ~DEFAULT_UMASK


@contextmanager
def atomic_file(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``final``, on error it is removed.

    The file gets the usual mode of new files (libraries that write 0600 files, such as
    safetensors, do not make our outputs private).

    >>> with atomic_file("out/results.json") as tmp:
    ...     tmp.write_text("{}")
    """
    tmp = temp_path(final)
    try:
        yield tmp
        place(tmp, final)
    except BaseException:
        discard(tmp)
        raise


@contextmanager
def atomic_folder(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary folder; on success it replaces ``final`` (a folder already there
    is removed first), on error it is removed."""
    tmp = temp_path(final, folder=True)
    try:
        tmp.mkdir()
        yield tmp
        place(tmp, final)
    except BaseException:
        discard(tmp)
        raise


def write_text(final: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``final`` atomically; return the path."""
    with atomic_file(final) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(final)


def append_line(path: str | os.PathLike[str], line: str) -> None:
    """Append ``line`` and a newline to ``path`` (created if needed), never through a link."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, file_mode())
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValueError(f"{path} is a link: persam-video never writes through one") from None
        raise
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(f"{line}\n")


def commit(
    moves: Iterable[tuple[Path, Path]],
    *,
    remove: Iterable[Path] = (),
    claim: OutputClaim | None = None,
) -> None:
    """Move finished temporaries into place: ``moves`` are ``(temporary, final)`` pairs, done
    in order (put the file that declares a run complete last); ``remove`` are final paths of
    an older run to delete first. With ``claim``, the folder's record of its outputs names the
    new ones before they move and is brought up to date after.

    Renames within one folder need no space, so once every temporary is written (the step
    that can fail for a full disk) this cannot leave half of a run's outputs in place.
    """
    moves = list(moves)
    finals = {final for _, final in moves}
    if claim is not None:
        claim.record(pending=[final.name for final in finals])
    for path in remove:
        if path not in finals:
            remove_quietly(path)
    for tmp, final in moves:
        place(tmp, final)
    if claim is not None:
        claim.record()


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


# -- the record of a folder's outputs ---------------------------------------------------------


@dataclass
class OutputClaim:
    """What one run may write in ``folder``: the names it claimed (every name it may write or
    remove), and those earlier runs of ``command`` recorded as theirs."""

    folder: Path
    command: str
    names: frozenset[str]
    owned: frozenset[str]

    def path(self, name: str) -> Path:
        return self.folder / name

    def record(self, pending: Iterable[str] = ()) -> None:
        """Write the folder's record: the claimed or owned names now there, and ``pending``
        (names about to be moved into place)."""
        there = {n for n in self.owned | self.names if os.path.lexists(self.folder / n)}
        names = there | set(pending)
        document = {"format": MANIFEST_FORMAT, "command": self.command, "outputs": sorted(names)}
        write_text(self.folder / MANIFEST_NAME, json.dumps(document, indent=1) + "\n")
        self.owned = frozenset(names)


def read_manifest(folder: str | os.PathLike[str]) -> tuple[str, frozenset[str]] | None:
    """The command and output names recorded in ``folder``; None without a record.

    Raises:
        ValueError: a record that is a link, not a plain file, or not this tool's.
    """
    path = Path(folder) / MANIFEST_NAME
    if not os.path.lexists(path):
        return None
    try:
        record = _read_record(path)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    names = record.get("outputs") if isinstance(record, dict) else None
    if (
        not isinstance(record, dict)
        or record.get("format") != MANIFEST_FORMAT
        or not isinstance(record.get("command"), str)
        or not isinstance(names, list)
        or not all(isinstance(n, str) for n in names)
    ):
        raise ValueError(f"{path} is not persam-video's record of its outputs: move it away")
    return record["command"], frozenset(names)


def claim_outputs(
    folder: str | os.PathLike[str], command: str, names: Iterable[str]
) -> OutputClaim:
    """Claim ``names`` in ``folder`` for a run of ``command``, refusing (ValueError, naming
    it) a folder recorded as another command's, or anything under one of ``names`` that no
    earlier run recorded: a run replaces only what persam-video made."""
    folder = Path(folder)
    names = frozenset(names)
    recorded = read_manifest(folder)
    if recorded is not None and recorded[0] != command:
        raise ValueError(
            f"{folder} holds the outputs of a `persam-video {recorded[0]}` run: give this "
            f"`{command}` run another output folder"
        )
    owned = recorded[1] if recorded is not None else frozenset()
    for name in sorted(names - owned):
        if os.path.lexists(folder / name):
            raise ValueError(
                f"{folder / name} was not made by an earlier persam-video run in this folder: "
                "move it away or choose another output folder (persam-video replaces only its "
                "own files)"
            )
    return OutputClaim(folder, command, names, owned)


@contextmanager
def run_folder(
    out_dir: str | os.PathLike[str], command: str, names: Iterable[str]
) -> Iterator[OutputClaim]:
    """The output folder of one run: created if needed, locked, stale temporaries of dead runs
    removed, ``names`` claimed (:func:`claim_outputs`). A folder this created and the run left
    empty is removed again."""
    created = not os.path.lexists(out_dir)
    out = prepare_out_dir(out_dir)
    try:
        with folder_lock(out):
            remove_stale_temporaries(out)
            yield claim_outputs(out, command, names)
    finally:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a run that wrote nothing leaves nothing, not even its folder


# -- the lock ---------------------------------------------------------------------------------


class FolderLockedError(ValueError):
    """Another process is writing to the output folder."""


@contextmanager
def folder_lock(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (an existing folder) for the duration.

    The lock is ``flock`` on a hidden :data:`LOCK_NAME` file holding the owner's pid; the
    kernel releases it when the process dies, however it dies, so a killed run never leaves
    the folder locked. The file is opened without following a link and must be a plain file
    of one link (a planted link is refused, nothing is written through it). It is removed on
    release (before unlocking; a process that locked the removed file notices and retries on
    the new one). Without ``fcntl`` (Windows) nothing is locked.

    Raises:
        FolderLockedError: another process holds the lock (the message names its pid).
        ValueError: the lock's name is taken by a link or by something else than a file.
    """
    folder = Path(folder)
    path = folder / LOCK_NAME
    if fcntl is None:  # pragma: no cover - Windows
        yield path
        return
    fd = _acquire(path, folder)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        try:
            if os.lstat(path).st_ino == os.fstat(fd).st_ino:
                path.unlink()
        except FileNotFoundError:
            pass
        os.close(fd)  # closing releases the flock


def _open_lock(path: Path) -> int:
    """Open (or create) the lock file, refusing a link or anything but a plain file."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, file_mode())
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            raise ValueError(
                f"{path} is not persam-video's lock file (a link or not a file): remove it"
            ) from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        raise ValueError(
            f"{path} is not persam-video's lock file (not a file of its own): remove it"
        )
    return fd


def _acquire(path: Path, folder: Path) -> int:
    """Open and flock ``path``; retry when it was removed under us (its owner released it)."""
    while True:
        fd = _open_lock(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise FolderLockedError(
                f"another persam-video run{_holder(path)} is writing to {folder}: wait for it "
                "to end or choose another --out"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.lstat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _holder(path: Path) -> str:
    """`` (pid N)`` from a lock file, or nothing when it cannot be read."""
    try:
        fd = os.open(path, _READ_FLAGS | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            pid = handle.read(32).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""
