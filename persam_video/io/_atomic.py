"""Helpers for atomic file outputs: write to a hidden sibling, then ``os.replace`` it."""

from __future__ import annotations

import os
from pathlib import Path

PARTIAL_MARKER = ".partial-"


def partial_path(final: Path) -> Path:
    """Hidden temporary sibling of ``final`` that keeps its extension.

    ``out/overlay.mp4`` -> ``out/.overlay.partial-<pid>.mp4``. Keeping the extension lets
    FFmpeg and Pillow pick the container/format from the name; the process id keeps two
    processes writing the same output from clobbering each other's temporary file.
    """
    return final.with_name(f".{final.stem}{PARTIAL_MARKER}{os.getpid()}{final.suffix}")


def remove_quietly(path: Path) -> None:
    """Delete ``path`` if it exists, ignoring a file that is already gone."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
