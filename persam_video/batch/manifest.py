"""Batch manifests: a CSV file with a header, or JSON lines, one clip per row.

- ``input`` (required): video file or folder of frames;
- ``mask`` or ``target`` (exactly one): first-frame mask, or a ``.target`` file (neither in a
  manifest of clips to search, whose targets are given once for every clip);
- ``name`` (optional): output folder name (default: the input's name without extension);
- ``overrides`` (optional): config overrides, ``key=value`` separated by ``;`` in CSV, a list of
  strings or a mapping in JSON lines.

Relative paths are relative to the manifest's folder. The whole manifest is checked before any
clip runs, and every problem is reported at once.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from persam_video.apps.engines import EngineConfig
from persam_video.apps.track import check_mask_or_targets, load_first_mask
from persam_video.atomic import check_component, check_not_overwriting
from persam_video.batch.clip import (
    FAILURES,
    FOUND_CSV,
    FOUND_HTML,
    FOUND_JSON,
    RUN_RECORD,
    ClipJob,
)
from persam_video.config import ConfigError, load_json
from persam_video.io import open_source, read_mask

MANIFEST_FIELDS = ("input", "mask", "target", "name", "overrides")
#: The columns of a manifest of clips to search (``find``): no per-clip annotation.
SEARCH_MANIFEST_FIELDS = ("input", "name", "overrides")
CSV_OVERRIDE_SEPARATOR = ";"
#: Names of the batch's (and find's) own files in the output folder, which no clip may take.
RESERVED_NAMES = (FAILURES, RUN_RECORD, FOUND_JSON, FOUND_CSV, FOUND_HTML)


class ManifestError(ValueError):
    """The manifest has problems; the message lists all of them, one per line."""


def read_manifest(
    path: str | os.PathLike[str],
    base_config: EngineConfig,
    *,
    resize_mask: bool = False,
    out_dir: str | os.PathLike[str] | None = None,
    annotations: bool = True,
) -> list[ClipJob]:
    """Parse and check a manifest; raise :class:`ManifestError` listing every problem.

    Without ``annotations`` (``find``: the targets are given once for every clip), rows have
    no ``mask`` or ``target`` column.

    Masks are read and checked against their clip's frame size here (unless ``resize_mask``,
    the size is not checked), so a bad mask is found before any clip runs. Output names must be
    plain folder names; with ``out_dir``, no clip's output folder may hold one of its inputs.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest {path} does not exist")
    rows = list(_rows(path))
    problems: list[str] = []
    jobs: list[ClipJob] = []
    names: dict[str, int] = {}
    for line, row in rows:
        where = f"{path.name}:{line}"
        fields = MANIFEST_FIELDS if annotations else SEARCH_MANIFEST_FIELDS
        unknown = sorted(set(row) - set(fields))
        if unknown:
            problems.append(f"{where}: unknown column(s) {', '.join(unknown)}")
        source = str(row.get("input") or "").strip()
        if not source:
            problems.append(f"{where}: no input")
            continue
        resolved = _resolve(path.parent, source)
        if not resolved.exists():
            problems.append(f"{where}: input {resolved} does not exist")
        mask, target = (str(row.get(k) or "").strip() or None for k in ("mask", "target"))
        if not annotations:  # their columns are reported as unknown above
            mask = target = None
        try:
            if annotations:
                check_mask_or_targets(mask is not None, target is not None)
        except ValueError:
            problems.append(f"{where}: give exactly one of mask and target")
        for kind, value in (("mask", mask), ("target", target)):
            if value is not None and not _resolve(path.parent, value).is_file():
                problems.append(f"{where}: {kind} {_resolve(path.parent, value)} does not exist")
        if mask is not None and resolved.exists() and _resolve(path.parent, mask).is_file():
            problem = _mask_problem(resolved, _resolve(path.parent, mask), resize_mask)
            if problem:
                problems.append(f"{where}: {problem}")
        overrides = _overrides(row.get("overrides"))
        try:
            base_config.with_overrides(list(overrides))
        except ConfigError as exc:
            problems.append(f"{where}: {exc}")
        name = str(row.get("name") or "").strip() or resolved.stem
        try:
            check_component(name, "output name")
            if name in RESERVED_NAMES:
                raise ValueError(f"output name {name!r} is the name of the batch's own record")
            check_not_overwriting(
                [resolved, *(_resolve(path.parent, v) for v in (mask, target) if v)],
                [Path(out_dir) / name] if out_dir else [],
            )
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
        if name in names:
            problems.append(f"{where}: output name {name!r} is also used on line {names[name]}")
        names.setdefault(name, line)
        jobs.append(
            ClipJob(
                name=name,
                input=str(resolved),
                mask=None if mask is None else str(_resolve(path.parent, mask)),
                target=None if target is None else str(_resolve(path.parent, target)),
                overrides=overrides,
            )
        )
    if not rows:
        problems.append(f"{path}: the manifest lists no clips")
    if problems:
        raise ManifestError("\n".join(problems))
    return jobs


def _mask_problem(video: Path, mask: Path, resize_mask: bool) -> str | None:
    """What is wrong with a clip's first-frame mask, or None.

    The mask must be readable and, unless ``resize_mask``, of its clip's frame size. A clip
    whose input cannot be opened is not a manifest problem: it fails when it runs, and is
    recorded with the other failures.
    """
    try:
        with open_source(video, prefetch=0) as frames:
            size = frames.size
    except ValueError:
        size = None
    try:
        if size is None:
            read_mask(mask)
        else:
            load_first_mask(mask, size, resize=resize_mask)
    except ValueError as exc:
        message = str(exc).splitlines()[0]
        return message.replace("pass --resize-mask", "run the batch with --resize-mask")
    return None


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    text = path.read_text(encoding="utf-8-sig")  # a BOM, as Excel writes CSV, is not a column
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        for line, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                row = load_json(raw)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{path.name}:{line}: not valid JSON ({exc.msg})") from None
            except ConfigError as exc:  # nested too deeply
                raise ManifestError(f"{path.name}:{line}: {exc}") from None
            if not isinstance(row, dict):
                raise ManifestError(f"{path.name}:{line}: each line must be a JSON object")
            yield line, row
        return
    reader = csv.DictReader(text.splitlines())
    for line, row in enumerate(reader, start=2):
        yield line, {k.strip(): v for k, v in row.items() if k is not None}


def _overrides(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, dict):
        return tuple(
            f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in value.items()
        )
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return tuple(p.strip() for p in str(value).split(CSV_OVERRIDE_SEPARATOR) if p.strip())


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path
