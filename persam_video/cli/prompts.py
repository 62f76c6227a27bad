"""The prompt options of ``track``: ``--mask PATH[@FRAME]``, ``--point [ID=]X,Y[@FRAME]``,
``--neg-point [ID=]X,Y[@FRAME]`` and ``--box [ID=]X0,Y0,X1,Y1[@FRAME]``.

FRAME is the 0-based frame index in decoding order (default 0); X, Y are pixels of the frame,
origin at the top left; ID is the object id (1..254, default 1). A malformed spec is one line
saying the expected form.
"""

from __future__ import annotations

import math
import re

from persam_video.apps.prompted import PromptSpec
from persam_video.cli.common import InputError
from persam_video.labels import MAX_OBJECTS

DEFAULT_OBJECT_ID = 1
FORMS = {
    "mask": "PATH[@FRAME]",
    "point": "[ID=]X,Y[@FRAME]",
    "neg-point": "[ID=]X,Y[@FRAME]",
    "box": "[ID=]X0,Y0,X1,Y1[@FRAME]",
}
EXAMPLES = {
    "mask": "mask.png@20",
    "point": "2=140,96@20",
    "neg-point": "2=150,40@20",
    "box": "2=100,60,180,130@20",
}
COORDINATES = {"point": 2, "neg-point": 2, "box": 4}
_FRAME = re.compile(r"^(.*)@(-?\d+)$", re.DOTALL)
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_ID = re.compile(r"^\s*(-?\d+)\s*=(.*)$", re.DOTALL)


def _malformed(kind: str, text: str, why: str = "") -> InputError:
    detail = f" ({why})" if why else ""
    return InputError(
        f"--{kind} {text!r}{detail}: expected {FORMS[kind]}, e.g. --{kind} {EXAMPLES[kind]}"
    )


def _split_frame(kind: str, text: str) -> tuple[str, int]:
    match = _FRAME.match(text)
    if match is None:
        if kind != "mask" and "@" in text:
            raise _malformed(kind, text, "FRAME must be an integer")
        return text, 0
    frame = int(match.group(2))
    if frame < 0:
        raise InputError(f"--{kind} {text!r}: frame {frame} is negative; frames count from 0")
    return match.group(1), frame


def parse_prompt(kind: str, text: str) -> PromptSpec:
    """One ``--mask``/``--point``/``--neg-point``/``--box`` value as a :class:`PromptSpec`."""
    body, frame = _split_frame(kind, text)
    if kind == "mask":
        if not body:
            raise _malformed(kind, text, "no path")
        return PromptSpec("mask", frame, path=body, text=text)
    obj_id = DEFAULT_OBJECT_ID
    id_match = _ID.match(body)
    if id_match is not None:
        obj_id, body = int(id_match.group(1)), id_match.group(2)
        if not 1 <= obj_id <= MAX_OBJECTS:
            raise InputError(
                f"--{kind} {text!r}: object id {obj_id} is not in 1..{MAX_OBJECTS} (0 is the "
                "background, 255 is void)"
            )
    parts = [p.strip() for p in body.split(",")]
    if len(parts) != COORDINATES[kind] or not all(re.fullmatch(_NUMBER, p) for p in parts):
        raise _malformed(kind, text)
    values = tuple(float(p) for p in parts)
    if not all(math.isfinite(v) for v in values):
        raise _malformed(kind, text, "coordinates must be finite")
    return PromptSpec(kind, frame, obj_id, values, text=text)  # type: ignore[arg-type]


def parse_prompts(
    masks: tuple[str, ...],
    points: tuple[str, ...],
    neg_points: tuple[str, ...],
    boxes: tuple[str, ...],
) -> list[PromptSpec]:
    """Every prompt option, parsed (masks first, then clicks and boxes, each in given order)."""
    specs = [parse_prompt("mask", t) for t in masks]
    specs += [parse_prompt("point", t) for t in points]
    specs += [parse_prompt("neg-point", t) for t in neg_points]
    specs += [parse_prompt("box", t) for t in boxes]
    return specs
