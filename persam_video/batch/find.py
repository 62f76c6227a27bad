"""``find``: search many clips for saved targets with the batch engine (resumable, failures
isolated, local or Ray), and report the spans where each target is present.

Each clip is searched by :class:`FindTask` into ``OUT/<name>/`` (``results.json``,
``thumbnails/``, ``masks/`` when asked, and ``done.json`` holding its spans), exactly as
``batch`` tracks a clip: a finished clip is skipped by a rerun, a failing one is recorded in
``failures.jsonl``. Once every clip is done or failed, the reports are rebuilt from the done
records of all clips, this run's and earlier runs', and written atomically:

- ``found.json``: per clip and target, its spans; the failures; the targets and span rules;
- ``found.csv``: one row per span;
- ``found.html``: a self-contained table (thumbnails embedded), sorted by clip.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import io
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from persam_video.atomic import check_component, check_not_overwriting, write_text
from persam_video.batch.clip import (
    DONE_RECORD,
    FAILURES,
    FOUND_CSV,
    FOUND_HTML,
    FOUND_JSON,
    BatchSettings,
    ClipJob,
    ClipOutcome,
    ClipRunner,
    check_complete,
    is_done,
)
from persam_video.batch.manifest import RESERVED_NAMES, ManifestError, read_manifest
from persam_video.batch.runner import run_batch
from persam_video.config import SpanRules, load_json
from persam_video.io import list_images, natural_key
from persam_video.io.reader import IMAGE_EXTENSIONS

if TYPE_CHECKING:
    from persam_video.apps.engines import EngineConfig

#: Inputs read as a manifest (the batch manifest's formats, without mask or target columns).
MANIFEST_SUFFIXES = frozenset({".csv", ".jsonl", ".ndjson", ".json"})
#: Files of a folder taken as clips (any other file in a folder of clips is ignored).
VIDEO_SUFFIXES = frozenset(
    {
        ".mp4",
        ".mov",
        ".m4v",
        ".avi",
        ".mkv",
        ".webm",
        ".mpg",
        ".mpeg",
        ".ts",
        ".mts",
        ".wmv",
        ".flv",
        ".3gp",
    }
)
FOUND_FORMAT = "persam-video found"
FOUND_FORMAT_VERSION = 1
CSV_COLUMNS = (
    "clip",
    "target",
    "start_frame",
    "end_frame",
    "start_s",
    "end_s",
    "best_frame",
    "best_score",
    "present_frames",
    "thumbnail",
    "input",
)
TARGET_SUFFIX = ".target"


@dataclass(frozen=True)
class TargetRef:
    """A target file to find: its name in the reports (the file name without ``.target``),
    its path and the SHA-256 of its bytes (a rerun with another target is refused)."""

    name: str
    path: str
    sha256: str


def target_refs(paths: Iterable[str | os.PathLike[str]]) -> tuple[TargetRef, ...]:
    """The :class:`TargetRef` of each target file; names must be distinct plain names."""
    refs: list[TargetRef] = []
    for item in paths:
        path = Path(item)
        name = path.name[: -len(TARGET_SUFFIX)] if path.name.endswith(TARGET_SUFFIX) else path.stem
        check_component(name, "target name")
        same = [ref.path for ref in refs if ref.name == name]
        if same:
            raise ValueError(f"two targets are named {name!r} ({same[0]} and {path}): rename one")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        refs.append(TargetRef(name, str(path), digest))
    if not refs:
        raise ValueError("give at least one --target")
    return tuple(refs)


@dataclass(frozen=True)
class FindTask:
    """Search each clip for the targets (the batch task of ``find``)."""

    command: ClassVar[str] = "find"
    reports: ClassVar[tuple[str, ...]] = (FOUND_JSON, FOUND_CSV, FOUND_HTML)

    targets: tuple[TargetRef, ...]
    rules: SpanRules = field(default_factory=SpanRules)
    save_masks: bool = False
    #: Frame rate of folders of frames (a string such as ``"30000/1001"``; None: 24).
    fps: str | None = None

    def record(self) -> dict[str, Any]:
        """What the spans depend on: the targets' names and contents, rules, masks, fps."""
        return {
            "task": "find",
            "targets": [{"name": t.name, "sha256": t.sha256} for t in self.targets],
            "spans": self.rules.to_dict(),
            "save_masks": self.save_masks,
            "fps": self.fps,
        }

    def run(
        self, runner: ClipRunner, job: ClipJob, config: EngineConfig, work: Path
    ) -> tuple[int, dict[str, Any]]:
        """Find the targets in ``job`` into ``work``; the done record gets its spans."""
        from persam_video.apps.find import find_in_clip
        from persam_video.apps.target_file import check_compatible, load_target, to_device

        targets = {}
        for ref in self.targets:
            loaded = load_target(ref.path)
            check_compatible(loaded, runner.metadata, ref.path)
            targets[ref.name] = to_device(loaded.target, runner.model.device)
        result = find_in_clip(
            runner.model.engine(config),
            job.input,
            targets,
            work,
            rules=self.rules,
            save_masks=self.save_masks,
            fps=self.fps,
            metadata=runner.metadata,
        )
        check_complete(result.summary)
        return result.summary.frames, {"outputs": result.summary.outputs, "found": result.spans}


def clip_jobs(
    inputs: Iterable[str | os.PathLike[str]],
    base_config: EngineConfig,
    out_dir: str | os.PathLike[str],
) -> list[ClipJob]:
    """The clips of ``inputs``: video files, folders, and manifests (CSV or JSON lines with
    ``input`` and optional ``name`` and ``overrides`` columns).

    A folder holding image frames is one clip; any other folder holds clips: its video files
    and its sub-folders of frames (hidden names skipped). A clip is named after its file
    (without the extension) or folder, or by its manifest row. Raises :class:`ManifestError`
    listing every problem: a missing input, a folder without clips, a name that is not a plain
    name or is used twice, an output folder that would hold an input.
    """
    out = Path(out_dir)
    problems: list[str] = []
    jobs: list[ClipJob] = []
    for item in inputs:
        path = Path(item)
        if not path.exists():
            problems.append(f"input {path} does not exist")
        elif path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
            try:
                jobs += read_manifest(path, base_config, out_dir=out, annotations=False)
            except ManifestError as exc:
                problems += str(exc).splitlines()
        elif path.is_dir():
            if out.resolve() == path.resolve() or path.resolve() in out.resolve().parents:
                problems.append(f"the output folder {out} is inside the input folder {path}")
                continue
            clips = [path] if list_images(path) else _clips_in(path)
            if not clips:
                problems.append(f"folder {path} holds no video files or folders of frames")
            jobs += [
                ClipJob(name=clip.stem if clip.is_file() else clip.name, input=str(clip))
                for clip in clips
            ]
        elif path.suffix.lower() in IMAGE_EXTENSIONS:
            problems.append(
                f"{path} is a photo: find searches videos and folders of frames; to find targets "
                "in photos, use persam-video segment"
            )
        else:
            jobs.append(ClipJob(name=path.stem, input=str(path)))
    seen: dict[str, str] = {}
    for job in jobs:
        try:
            check_component(job.name, "clip name")
            if job.name in RESERVED_NAMES:
                raise ValueError(f"clip name {job.name!r} is the name of one of find's reports")
            check_not_overwriting([job.input], [out / job.name])
        except ValueError as exc:
            problems.append(str(exc))
        if job.name in seen:
            problems.append(
                f"two clips are named {job.name!r} ({seen[job.name]} and {job.input}): "
                "list them in a manifest with a name column"
            )
        seen.setdefault(job.name, job.input)
    if not jobs and not problems:
        problems.append("no clips to search")
    if problems:
        raise ManifestError("\n".join(dict.fromkeys(problems)))
    return jobs


def _clips_in(folder: Path) -> list[Path]:
    """Video files and folders of frames directly inside ``folder``, in natural order."""
    clips = []
    for entry in sorted(folder.iterdir(), key=lambda e: natural_key(e.name)):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix.lower() in VIDEO_SUFFIXES:
            clips.append(entry)
        elif entry.is_dir() and list_images(entry):
            clips.append(entry)
    return clips


@dataclass
class FindRun:
    """What :func:`run_find` did: one outcome per clip, and the ``found.json`` document (None
    when the run was interrupted before the reports)."""

    outcomes: list[ClipOutcome]
    found: dict[str, Any] | None


def run_find(
    jobs: list[ClipJob],
    out_dir: str | os.PathLike[str],
    settings: BatchSettings,
    *,
    ray_address: str | None = None,
    workers: int = 1,
    gpus_per_worker: float = 0.0,
    on_outcome: Callable[[ClipOutcome], None] | None = None,
) -> FindRun:
    """Search every clip not searched yet (``settings.task`` a :class:`FindTask`), then write
    the reports from every finished clip's record; see :func:`~persam_video.batch.runner.
    run_batch` for the arguments."""
    task = settings.task
    if not isinstance(task, FindTask):
        raise TypeError("run_find needs settings whose task is a FindTask")
    found: dict[str, Any] = {}

    def reports(out: Path, outcomes: list[ClipOutcome]) -> None:
        found.update(write_reports(out, jobs, task, settings.model))

    outcomes = run_batch(
        jobs,
        out_dir,
        settings,
        ray_address=ray_address,
        workers=workers,
        gpus_per_worker=gpus_per_worker,
        on_outcome=on_outcome,
        on_finish=reports,
    )
    return FindRun(outcomes, found or None)


def found_document(out: Path, jobs: list[ClipJob], task: FindTask, model: str) -> dict[str, Any]:
    """The ``found.json`` document, from the done records of ``jobs`` in ``out`` and its
    ``failures.jsonl``; clips sorted by name, spans by target then start."""
    clips = []
    for job in sorted(jobs, key=lambda j: natural_key(j.name)):
        if not is_done(out, job):
            continue
        done = load_json((out / job.name / DONE_RECORD).read_text(encoding="utf-8"))
        found = done.get("found", {})
        clips.append(
            {
                "name": job.name,
                "input": job.input,
                "frames": done.get("frames"),
                "targets": {
                    ref.name: [
                        {**span, "thumbnail": f"{job.name}/{span['thumbnail']}"}
                        for span in found.get(ref.name, [])
                    ]
                    for ref in task.targets
                },
            }
        )
    failures = []
    if (out / FAILURES).is_file():
        for line in (out / FAILURES).read_text(encoding="utf-8").splitlines():
            if line.strip():
                failures.append(load_json(line))
    return {
        "format": FOUND_FORMAT,
        "format_version": FOUND_FORMAT_VERSION,
        "model": model,
        "targets": {ref.name: {"path": ref.path, "sha256": ref.sha256} for ref in task.targets},
        "spans": task.rules.to_dict(),
        "clips": clips,
        "failures": sorted(failures, key=lambda f: natural_key(str(f.get("name")))),
    }


def write_reports(out: Path, jobs: list[ClipJob], task: FindTask, model: str) -> dict[str, Any]:
    """Write ``found.json``, ``found.csv`` and ``found.html`` (each atomically); return the
    ``found.json`` document."""
    document = found_document(out, jobs, task, model)
    write_text(out / FOUND_JSON, json.dumps(document, indent=1, allow_nan=False))
    write_text(out / FOUND_CSV, found_csv(document))
    write_text(out / FOUND_HTML, found_html(document, out))
    return document


def span_rows(document: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per span of a ``found.json`` document (clip, target, the span's fields)."""
    rows = []
    for clip in document["clips"]:
        for target, spans in clip["targets"].items():
            for span in spans:
                rows.append(
                    {"clip": clip["name"], "target": target, "input": clip["input"], **span}
                )
    return rows


def found_csv(document: dict[str, Any]) -> str:
    """``found.csv``: one row per span, columns :data:`CSV_COLUMNS`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for row in span_rows(document):
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in CSV_COLUMNS})
    return buffer.getvalue()


_HTML_STYLE = (
    "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
    "th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:middle}"
    "th{background:#eee}td.none{color:#888}img{display:block}"
)


def found_html(document: dict[str, Any], out: Path) -> str:
    """``found.html``: a self-contained page (no external resource; thumbnails embedded as
    base64 JPEG) with one table row per span, sorted by clip, clips without spans and the
    failures listed too."""
    e = html.escape
    targets = ", ".join(document["targets"])
    clips, failures = document["clips"], document["failures"]
    rows = []
    for clip in clips:
        spans = [(t, s) for t, spans in clip["targets"].items() for s in spans]
        if not spans:
            rows.append(
                f'<tr><td>{e(clip["name"])}</td><td class="none" colspan="6">'
                "no target found</td></tr>"
            )
        for target, span in spans:
            image = _embedded_image(out / span["thumbnail"], f"{clip['name']}: {target}")
            times = ""
            if span["start_s"] is not None:
                times = f"{span['start_s']:.2f} – {span['end_s']:.2f}"
            rows.append(
                f"<tr><td>{e(clip['name'])}</td><td>{e(target)}</td>"
                f"<td>{span['start_frame']} – {span['end_frame']}</td><td>{e(times)}</td>"
                f"<td>{span['best_frame']}</td><td>{span['best_score']:.3f}</td>"
                f"<td>{image}</td></tr>"
            )
    failed = "".join(
        f"<tr><td>{e(str(f.get('name')))}</td><td>{e(str(f.get('reason')))}</td></tr>"
        for f in failures
    )
    failure_table = (
        f"<h2>Failures</h2><table><thead><tr><th>clip</th><th>reason</th></tr></thead>"
        f"<tbody>{failed}</tbody></table>"
        if failures
        else ""
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>persam-video find: {e(targets)}</title>\n<style>{_HTML_STYLE}</style>\n"
        "</head>\n<body>\n"
        f"<h1>Found: {e(targets)}</h1>\n"
        f"<p>{len(clips) + len(failures)} clips searched, {len(failures)} failed; spans bridge "
        "gaps of up to "
        f"{document['spans']['max_gap']} frames and need {document['spans']['min_frames']} "
        "present frames.</p>\n"
        "<table><thead><tr><th>clip</th><th>target</th><th>frames</th><th>seconds</th>"
        "<th>best frame</th><th>score</th><th>thumbnail</th></tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + "\n</tbody></table>\n"
        + failure_table
        + "\n</body>\n</html>\n"
    )


def _embedded_image(path: Path, alt: str) -> str:
    """An ``<img>`` with the JPEG at ``path`` embedded (or a note when it is missing)."""
    try:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError:
        return "(thumbnail missing)"
    return f'<img alt="{html.escape(alt)}" src="data:image/jpeg;base64,{data}">'
