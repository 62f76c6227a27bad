"""Atomic outputs: everything is written under a hidden temporary name, then renamed into place.

One convention for every file and folder persam-video writes: the temporary sibling of
``out/name.ext`` is ``out/.name.partial-<pid>.ext`` (the extension kept, so FFmpeg and Pillow pick
the format from the name) and that of a folder ``out/name`` is ``out/.name.partial-<pid>`` (the
process id keeps two processes from clobbering each other's temporaries). ``os.replace`` then
moves it into place in one step, so a file or folder under its final name is always complete.

- :func:`temp_path`: the temporary sibling of a final path.
- :func:`atomic_file`: a context manager yielding the temporary path of a file to write.
- :func:`atomic_folder`: the same for a folder (a final folder already there is replaced).
- :func:`write_text`: a whole text file at once.
- :func:`commit`: move several finished temporaries into place, the one that says the run is
  complete (``results.json``) last.
- :func:`folder_lock`: one writer per output folder at a time.
- :func:`remove_stale_temporaries`: temporaries left by processes that died (SIGKILL, power
  loss) are removed by the next run into the same folder.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

try:  # POSIX; elsewhere folder_lock does not lock (documented)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: What marks a temporary output in its name (``.name.partial-<pid>``).
PARTIAL_MARKER = ".partial-"
#: Mode of a new file before the umask, and the umask assumed where it cannot be read.
FILE_MODE = 0o666
DEFAULT_UMASK = 0o022


#: A temporary's name: ``.name.partial-<pid>`` or ``.stem.partial-<pid>.ext``.
_TEMPORARY_NAME = re.compile(r"\.(?P<name>.+)\.partial-(?P<pid>\d+)(?P<ext>\.[^.]*)?")
#: The lock file of an output folder (hidden, removed when the run ends).
LOCK_NAME = ".persam-video.lock"


#: Longest file name most file systems take (bytes of UTF-8).
MAX_NAME_BYTES = 255


def check_component(name: str, what: str) -> str:
    """``name`` if it can be one file or folder name inside an output folder, else ValueError.

    Names that come from the user's data (DAVIS sequence names, manifest names) become paths
    that are written and replaced: a name such as ``..`` or ``a/b`` would reach outside the
    output folder, and a hidden name (``.x``) could be taken for one of our temporaries.
    """
    problem = None
    if not name or name in (".", ".."):
        problem = "is empty or a relative reference"
    elif "/" in name or "\\" in name or "\0" in name:
        problem = "holds a path separator or a NUL character"
    elif name.startswith("."):
        problem = "starts with '.' (hidden names are kept for temporary files)"
    elif name != name.strip():
        problem = "starts or ends with white space"
    elif len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        problem = f"is longer than {MAX_NAME_BYTES} bytes"
    if problem:
        raise ValueError(f"{what} {name[:80]!r} {problem}: it must be a plain file or folder name")
    return name


def check_not_overwriting(
    inputs: list[str | os.PathLike[str]], outputs: list[str | os.PathLike[str]]
) -> None:
    """Refuse (ValueError) when an output would replace an input, a folder holding one, or
    something already in an input folder (a frame of a folder of frames, say).

    Paths are compared resolved (links followed), so ``--out`` spelled differently from the
    input is still caught.
    """
    written = [Path(out).resolve() for out in outputs]
    for item in inputs:
        source = Path(item).resolve()
        for out in written:
            inside_input = source.is_dir() and source in out.parents and out.exists()
            if source == out or out in source.parents or inside_input:
                raise ValueError(
                    f"the output {out} would overwrite the input {item}: choose another --out"
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


def temp_path(final: str | os.PathLike[str], *, folder: bool = False) -> Path:
    """Hidden temporary sibling of ``final`` for this process.

    ``out/overlay.mp4`` -> ``out/.overlay.partial-<pid>.mp4``; with ``folder``,
    ``out/masks`` -> ``out/.masks.partial-<pid>``.
    """
    final = Path(final)
    if folder:
        return final.with_name(f".{final.name}{PARTIAL_MARKER}{os.getpid()}")
    return final.with_name(f".{final.stem}{PARTIAL_MARKER}{os.getpid()}{final.suffix}")


def remove_quietly(path: str | os.PathLike[str]) -> None:
    """Delete a file or folder if it exists (nothing happens when it is already gone)."""
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
    final = Path(final)
    tmp = temp_path(final)
    try:
        yield tmp
        os.chmod(tmp, file_mode())
        os.replace(tmp, final)
    except BaseException:
        remove_quietly(tmp)
        raise


@contextmanager
def atomic_folder(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary folder; on success it replaces ``final`` (an existing one is
    removed first), on error it is removed."""
    final = Path(final)
    tmp = temp_path(final, folder=True)
    remove_quietly(tmp)
    tmp.mkdir()
    try:
        yield tmp
        replace_folder(tmp, final)
    except BaseException:
        remove_quietly(tmp)
        raise


def replace_folder(source: str | os.PathLike[str], final: str | os.PathLike[str]) -> None:
    """Move the finished folder ``source`` to ``final``, replacing a folder already there."""
    remove_quietly(final)
    os.replace(source, final)


def write_text(final: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``final`` atomically; return the path."""
    with atomic_file(final) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(final)


def commit(moves: Iterable[tuple[Path, Path]], *, remove: Iterable[Path] = ()) -> None:
    """Move finished temporaries into place: ``moves`` are ``(temporary, final)`` pairs, done
    in order (put the file that declares a run complete last); ``remove`` are final paths of
    an older run to delete first, so the folder ends up holding exactly this run's outputs.

    Renames within one folder need no space, so once every temporary is written (the step
    that can fail for a full disk) this cannot leave half of a run's outputs in place.
    """
    moves = list(moves)
    finals = {final for _, final in moves}
    for path in remove:
        if path not in finals:
            remove_quietly(path)
    for tmp, final in moves:
        if tmp.is_dir() and not tmp.is_symlink():
            replace_folder(tmp, final)
        else:
            os.chmod(tmp, file_mode())
            if final.is_dir() and not final.is_symlink():
                remove_quietly(final)
            os.replace(tmp, final)


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
    return True


def stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Temporaries in ``folder`` (``.name.partial-<pid>...``) whose process is gone."""
    folder = Path(folder)
    found = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    for entry in entries:
        match = _TEMPORARY_NAME.fullmatch(entry.name)
        if match and int(match["pid"]) != os.getpid() and not pid_alive(int(match["pid"])):
            found.append(entry)
    return sorted(found)


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete :func:`stale_temporaries` of ``folder``; return what was removed."""
    stale = stale_temporaries(folder)
    for path in stale:
        remove_quietly(path)
    return stale


class FolderLockedError(ValueError):
    """Another process is writing to the output folder."""


@contextmanager
def folder_lock(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (an existing folder) for the duration.

    The lock is ``flock`` on a hidden :data:`LOCK_NAME` file holding the owner's pid; the
    kernel releases it when the process dies, however it dies, so a killed run never leaves
    the folder locked. The file is removed on release (before unlocking; a process that
    locked the removed file notices and retries on the new one). Without ``fcntl``
    (Windows) nothing is locked.

    Raises:
        FolderLockedError: another process holds the lock (the message names its pid).
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
            path.unlink()
        except FileNotFoundError:
            pass
        os.close(fd)  # closing releases the flock


def _acquire(path: Path, folder: Path) -> int:
    """Open and flock ``path``; retry when it was removed under us (its owner released it)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, file_mode())
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
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _holder(path: Path) -> str:
    """`` (pid N)`` from a lock file, or nothing when it cannot be read."""
    try:
        pid = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""
