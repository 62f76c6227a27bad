"""``report.html``: a self-contained visual report of a tracking run.

One HTML file, no external resources: the run's facts, links to its overlay and masked videos
(relative paths, so the folder can be moved), per object a timeline (matplotlib, inline SVG) of
presence, score, peak similarity and area over the frames with the annotated, lost and
re-acquired frames marked (and, when SAM skipped frames, a rug of ticks under the area panel at
the frames SAM ran on: ``keyframes`` in the config), and a strip of key frames (first,
annotated, lost, re-acquired, last) as embedded JPEG thumbnails with the masks drawn.

The plotted series are embedded as JSON (``<script type="application/json" id="series">``),
read back from the plotted lines themselves, so a test (or a user's script) can check the plot
against ``results.json``.

Data flow: :class:`KeyFrames` sees every frame as it is written (it keeps a bounded number of
thumbnails, so memory does not grow with the video) and :func:`render_report` turns the
results document and the key frames into HTML.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
from PIL import Image

from persam_video.apps import visualize
from persam_video.labels import BACKGROUND_ID, VOID_ID

REPORT_NAME = "report.html"
#: Thumbnail width in pixels, and JPEG quality.
THUMB_WIDTH = 240
THUMB_QUALITY = 80
#: At most this many key frames besides the first and the last.
MAX_KEY_FRAMES = 24
#: Timeline figure size (inches) and resolution of its text.
FIGURE_SIZE = (9.0, 4.2)
FIGURE_DPI = 100
#: Colours of the event marks on the timelines.
MARK_COLOURS = {"annotated": "#2ca02c", "lost": "#d62728", "re-acquired": "#1f77b4"}
#: Series drawn per object: results.json key -> (panel, label).
SERIES = {
    "present": (0, "present"),
    "score": (1, "score"),
    "peak_similarity": (1, "peak similarity"),
    "area": (2, "area (pixels)"),
}
PANEL_HEIGHTS = (1, 2, 2)
#: The rug of SAM keyframes: colour, and tick height as a share of the area panel.
KEYFRAME_COLOUR = "#555555"
KEYFRAME_TICK = 0.08


# --------------------------------------------------------------------------- key frames
@dataclass
class KeyFrame:
    """A frame shown in the report's strip."""

    index: int
    reasons: list[str]
    jpeg: bytes


@dataclass
class KeyFrames:
    """Collects the key frames of a run while it is written, in frame order.

    A frame is key when it is the first or the last, is annotated, or an object is lost
    (present on the frame before, absent now) or re-acquired (the reverse). At most
    :data:`MAX_KEY_FRAMES` are kept besides the first and the last; ``skipped`` counts the rest.
    """

    annotated: frozenset[int] = frozenset()
    limit: int = MAX_KEY_FRAMES
    frames: list[KeyFrame] = field(default_factory=list)
    skipped: int = 0
    _present: dict[int, bool] = field(default_factory=dict)
    _last: tuple[int, np.ndarray, np.ndarray] | None = None
    _count: int = 0

    def add(
        self, index: int, rgb: np.ndarray, labels: np.ndarray, present: Mapping[int, bool]
    ) -> None:
        """Frame ``index``: (H, W, 3) uint8 RGB, (H, W) uint8 labels, presence per object id."""
        reasons = ["first"] if self._count == 0 else []
        if index in self.annotated:
            reasons.append("annotated")
        for obj_id, now in present.items():
            before = self._present.get(obj_id)
            if before and not now:
                reasons.append(f"lost {obj_id}")
            elif before is False and now:
                reasons.append(f"re-acquired {obj_id}")
        self._present.update(present)
        self._count += 1
        if reasons:
            if self._count == 1 or len(self.frames) <= self.limit:
                self.frames.append(KeyFrame(index, reasons, thumbnail(rgb, labels)))
            else:
                self.skipped += 1
        self._last = (index, rgb, labels)

    def finish(self) -> list[KeyFrame]:
        """The key frames, the last frame included."""
        if self._last is not None and (not self.frames or self.frames[-1].index != self._last[0]):
            index, rgb, labels = self._last
            self.frames.append(KeyFrame(index, ["last"], thumbnail(rgb, labels)))
        elif self.frames and "last" not in self.frames[-1].reasons:
            self.frames[-1].reasons.append("last")
        self._last = None
        return self.frames


def thumbnail(rgb: np.ndarray, labels: np.ndarray, width: int = THUMB_WIDTH) -> bytes:
    """JPEG bytes of the frame with its masks drawn, ``width`` pixels wide."""
    image = Image.fromarray(visualize.overlay(rgb, labels, legend=_object_ids(labels)))
    height = max(1, round(image.height * width / image.width))
    small = image.resize((width, height), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=THUMB_QUALITY)
    return buffer.getvalue()


def _object_ids(labels: np.ndarray) -> list[int]:
    return [int(v) for v in np.unique(labels) if BACKGROUND_ID < v < VOID_ID]


# --------------------------------------------------------------------------- timelines
def object_series(document: Mapping[str, Any], obj_id: int) -> dict[str, list[float | None]]:
    """Per series name, the values of object ``obj_id`` over the frames of ``document``
    (results.json), None where it has none; ``index`` holds the frame indices."""
    key = str(obj_id)
    frames = [f for f in document["frames"] if key in f["objects"]]
    series: dict[str, list[float | None]] = {"index": [f["index"] for f in frames]}
    for name in SERIES:
        values = []
        for frame in frames:
            value = frame["objects"][key].get(name)
            values.append(None if value is None else float(value))
        series[name] = values
    return series


def events(
    document: Mapping[str, Any], obj_id: int, annotated: Iterable[int] = ()
) -> dict[str, list[int]]:
    """Frame indices where object ``obj_id`` was annotated, lost and re-acquired."""
    key = str(obj_id)
    found: dict[str, list[int]] = {"annotated": sorted(annotated), "lost": [], "re-acquired": []}
    before = None
    for frame in document["frames"]:
        record = frame["objects"].get(key)
        if record is None:
            continue
        now = bool(record["present"])
        if before is True and not now:
            found["lost"].append(frame["index"])
        elif before is False and now:
            found["re-acquired"].append(frame["index"])
        before = now
    return found


def keyframe_indices(document: Mapping[str, Any]) -> list[int] | None:
    """Indices of the frames SAM ran on, or None when it ran on every frame (no rug drawn)."""
    frames = document["frames"]
    if all(f.get("keyframe", True) for f in frames):
        return None
    return [f["index"] for f in frames if f.get("keyframe", True)]


def timeline_svg(
    document: Mapping[str, Any], obj_id: int, annotated: Iterable[int] = ()
) -> tuple[str, dict[str, Any]]:
    """The SVG timeline of one object, and the series as plotted (read back from the lines)."""
    from matplotlib.figure import Figure

    series = object_series(document, obj_id)
    marks = events(document, obj_id, annotated)
    figure = Figure(figsize=FIGURE_SIZE, dpi=FIGURE_DPI, layout="constrained")
    axes = figure.subplots(
        len(PANEL_HEIGHTS), 1, sharex=True, gridspec_kw={"height_ratios": PANEL_HEIGHTS}
    )
    plotted: dict[str, Any] = {}
    x = np.asarray(series["index"], dtype=float)
    for name, (panel, label) in SERIES.items():
        y = np.asarray([np.nan if v is None else v for v in series[name]], dtype=float)
        drawn = "steps-post" if name == "present" else "default"
        (line,) = axes[panel].plot(x, y, label=label, drawstyle=drawn, linewidth=1.2)
        line.set_gid(f"object-{obj_id}-{name}")
        xy = line.get_xydata()
        plotted[name] = [[float(a), None if np.isnan(b) else float(b)] for a, b in xy]
    for kind, frames in marks.items():
        for number, index in enumerate(frames):
            for ax in axes:
                named = ax is axes[0] and number == 0  # one legend entry per kind
                ax.axvline(
                    index,
                    color=MARK_COLOURS[kind],
                    linewidth=0.8,
                    linestyle="--",
                    label=f"{kind} (dashed)" if named else None,
                )
    if any(marks.values()):
        axes[0].legend(loc="center right", fontsize="small")
    keys = keyframe_indices(document)
    if keys is not None:
        rug = axes[2].vlines(
            keys,
            0.0,
            KEYFRAME_TICK,
            transform=axes[2].get_xaxis_transform(),
            colors=KEYFRAME_COLOUR,
            linewidth=0.8,
            label="SAM keyframes",
        )
        rug.set_gid(f"object-{obj_id}-keyframes")
        axes[2].legend(loc="upper left", fontsize="small")
    axes[0].set_yticks([0, 1], ["absent", "present"])
    axes[1].set_ylim(-0.05, 1.05)
    axes[1].legend(loc="lower left", fontsize="small")
    axes[2].set_xlabel("frame")
    for ax, title in zip(axes, ("presence", "confidence", "area"), strict=True):
        ax.set_ylabel(title, fontsize="small")
        ax.grid(alpha=0.3)
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]  # drop the XML prolog and doctype: inline in HTML
    return svg, {"series": plotted, "events": marks, "keyframes": keys}


# --------------------------------------------------------------------------- page
def render_report(
    document: Mapping[str, Any],
    key_frames: Iterable[KeyFrame],
    *,
    annotated: Iterable[int] = (),
    skipped: int = 0,
) -> str:
    """The report's HTML for a results document (results.json) and its key frames;
    ``annotated``: the frames the user annotated (marked on the timelines)."""
    annotated = sorted(annotated)
    outputs = document.get("outputs", {})
    title = f"persam-video: {document['input'].get('path') or 'frames'}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        _facts(document),
        _links(outputs),
    ]
    data: dict[str, Any] = {}
    for obj_id in document["object_ids"]:
        svg, plotted = timeline_svg(document, obj_id, annotated)
        data[str(obj_id)] = plotted
        colour = "#{:02x}{:02x}{:02x}".format(*visualize.object_color(obj_id))
        parts.append(
            f'<section class="object" id="object-{obj_id}"><h2>'
            f'<span class="swatch" style="background:{colour}"></span>object {obj_id}</h2>'
            f'<div class="timeline">{svg}</div></section>'
        )
    parts.append(_strip(list(key_frames), skipped))
    series_json = json.dumps(data, allow_nan=False).replace("</", "<\\/")
    parts.append(f'<script type="application/json" id="series">{series_json}</script>')
    parts.append("</body></html>")
    return "\n".join(parts)


def _facts(document: Mapping[str, Any]) -> str:
    source = document["input"]
    timings = document.get("timings", {})
    error = f": {document['error']}" if document.get("error") else ""
    rows = [
        ("status", f"{document['status']}{error}"),
        (
            "frames",
            f"{timings.get('frames', len(document['frames']))}"
            f" of {source.get('frames_expected') or '?'} expected",
        ),
        ("size (H x W)", " x ".join(str(v) for v in source["size_hw"])),
        ("frame rate", frame_rate_text(source["fps"], source.get("fps_from", "input"))),
        ("objects", ", ".join(str(i) for i in document["object_ids"])),
        ("model", str(document.get("run", {}).get("model", "?"))),
        ("speed", f"{timings.get('frames_per_s', '?')} frames/s"),
    ]
    prompts = document.get("prompts")
    if prompts:
        rows.append(("prompts", prompts_text(prompts)))
    keys = keyframe_indices(document)
    if keys is not None:
        rows.append(
            (
                "SAM keyframes",
                f"{len(keys)} of {len(document['frames'])} frames (the "
                "others carried along the optical flow)",
            )
        )
    cells = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    model_warning = document.get("run", {}).get("warning")
    said = [f"warning: {model_warning}"] if model_warning else []
    warnings = "".join(f"<li>{_e(w)}</li>" for w in [*said, *document.get("warnings", [])])
    return f"<table class='facts'>{cells}</table>" + (f"<ul>{warnings}</ul>" if warnings else "")


def frame_rate_text(fps: Any, origin: str) -> str:
    """``29.56 frames/s (3725/126, input)``: the rate in decimals, then exactly as recorded."""
    try:
        rate = float(Fraction(str(fps)))
    except (ValueError, ZeroDivisionError):
        return f"{fps} ({origin})"
    exact = f"{fps}, " if "/" in str(fps) else ""
    return f"{rate:.4g} frames/s ({exact}{origin})"


def prompts_text(prompts: list[Mapping[str, Any]]) -> str:
    """The prompts of a prompted run in one line: ``object 1: 2 points on frame 120; ...``."""
    parts = []
    for prompt in prompts:
        what = []
        if prompt.get("points"):
            count = len(prompt["points"])
            what.append(f"{count} point{'s' if count != 1 else ''}")
        if prompt.get("box") is not None:
            what.append("a box")
        if not what:
            what.append(str(prompt.get("kind", "a prompt")))
        parts.append(f"object {prompt['object']}: {' and '.join(what)} on frame {prompt['frame']}")
    return "; ".join(parts)


def _links(outputs: Mapping[str, str]) -> str:
    videos = [(key, name) for key, name in outputs.items() if key in ("overlay", "masked")]
    if not videos:
        return ""
    items = "".join(
        f'<li><a href="{_e(name)}">{_e(key)}: {_e(name)}</a>'
        f'<video controls preload="none" src="{_e(name)}"></video></li>'
        for key, name in videos
    )
    return f"<ul class='videos'>{items}</ul>"


def _strip(frames: list[KeyFrame], skipped: int) -> str:
    cells = []
    for frame in frames:
        data = base64.b64encode(frame.jpeg).decode("ascii")
        caption = f"frame {frame.index}: {', '.join(frame.reasons)}"
        cells.append(
            f'<figure><img alt="{_e(caption)}" src="data:image/jpeg;base64,{data}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )
    more = f"<p>{skipped} more key frames are not shown.</p>" if skipped else ""
    return f"<section><h2>key frames</h2><div class='strip'>{''.join(cells)}</div>{more}</section>"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}"
    "table.facts th{text-align:left;padding-right:1em;font-weight:600}"
    ".swatch{display:inline-block;width:.9em;height:.9em;margin-right:.4em;border-radius:2px}"
    ".timeline svg{max-width:100%;height:auto}"
    ".strip{display:flex;flex-wrap:wrap;gap:.6em}"
    "figure{margin:0;font-size:.8em}figure img{display:block}"
    "ul.videos video{display:block;max-width:480px;margin:.3em 0 1em}"
)
