"""The package's layers: imports point one way only (down), and no import cycle exists.

Layers, lowest first (a module may import modules of lower layers, and of its own subpackage):

0. foundation: ``config``, ``labels``, ``atomic``, ``progress``, ``runtime``, ``_version``
1. ``model`` (SAM architectures, checkpoints, demo model, attention) and ``io`` (video, masks)
2. ``persam`` (the PerSAM math, image mode) and ``synthetic`` (procedural clips)
3. ``video`` (the tracker, the engine seam)
4. ``memory`` (the memory engine: SAM 2.1, EdgeTAM, the SAM 3 tracker)
5. ``eval`` (DAVIS measures)
6. ``apps`` (track to folder, images, targets, DAVIS runs, demo)
7. ``batch`` (many clips, Ray)
8. ``cli`` (the command line)

The package's own ``__init__`` is the public facade (lazy exports) and may name anything.
Every import counts: at module level, inside functions, and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

from tests.helpers import REPO_ROOT

PACKAGE = "persam_video"
LAYERS: tuple[tuple[str, ...], ...] = (
    ("config", "labels", "atomic", "progress", "runtime", "_version"),
    ("model", "io"),
    ("persam", "synthetic"),
    ("video",),
    ("memory",),
    ("eval",),
    ("apps",),
    ("batch",),
    ("cli",),
)


def module_name(root: Path, path: Path) -> str:
    """``persam_video/persam/prior.py`` -> ``persam_video.persam.prior`` (``__init__`` dropped)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(root: Path, path: Path) -> set[str]:
    """Package modules imported anywhere in ``path`` (``from a import b`` names ``a.b`` when it
    is a module of its own)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                is_module = (root / Path(*candidate.split("."))).with_suffix(".py").is_file() or (
                    root / Path(*candidate.split(".")) / "__init__.py"
                ).is_file()
                found.add(candidate if is_module else node.module)
    return {name for name in found if name == PACKAGE or name.startswith(f"{PACKAGE}.")}


def unit_of(module: str) -> str:
    """The layer unit of a module: ``persam_video.persam.prior`` -> ``persam``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_of(unit: str) -> int | None:
    for index, units in enumerate(LAYERS):
        if unit in units:
            return index
    return None


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> package modules it imports, for every module of the package under ``root``."""
    return {
        module_name(root, path): imported_modules(root, path)
        for path in sorted((root / PACKAGE).rglob("*.py"))
    }


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import that points up or sideways between units, and every module in no layer."""
    problems = []
    for module, imports in graph.items():
        if module == PACKAGE:  # the facade
            continue
        unit = unit_of(module)
        layer = layer_of(unit)
        if layer is None:
            problems.append(f"{module} belongs to no layer")
            continue
        for target in sorted(imports):
            target_unit = unit_of(target)
            if target_unit == unit:
                continue
            target_layer = layer_of(target_unit)
            if target == PACKAGE or target_layer is None or target_layer >= layer:
                problems.append(f"{module} (layer {layer}) imports {target} (layer {target_layer})")
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles among the package's modules (each found once, as a path)."""
    found, state = [], {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_imports_point_down_only():
    graph = import_graph(REPO_ROOT)
    assert len(graph) > 40  # the whole package was read
    assert layer_violations(graph) == []


def test_no_import_cycles():
    assert cycles(import_graph(REPO_ROOT)) == []


def test_the_subpackages_are_the_layers():
    top = {p.stem if p.is_file() else p.name for p in (REPO_ROOT / PACKAGE).iterdir()}
    code = {name for name in top if not name.startswith("__") and name not in ("assets", "presets")}
    assert code - {"py"} == {unit for units in LAYERS for unit in units}


def _copy_package(tmp_path: Path) -> Path:
    shutil.copytree(
        REPO_ROOT / PACKAGE,
        tmp_path / PACKAGE,
        ignore=shutil.ignore_patterns("assets", "presets", "__pycache__"),
    )
    return tmp_path


def test_a_planted_upward_import_is_caught(tmp_path):
    root = _copy_package(tmp_path)
    prior = root / PACKAGE / "persam" / "prior.py"
    prior.write_text(
        prior.read_text() + "\n\ndef _planted():\n    from persam_video.cli import main\n"
    )
    problems = layer_violations(import_graph(root))
    assert problems == ["persam_video.persam.prior (layer 2) imports persam_video.cli (layer 8)"]


def test_a_planted_sideways_import_and_a_cycle_are_caught(tmp_path):
    root = _copy_package(tmp_path)
    model = root / PACKAGE / "model" / "spec.py"
    model.write_text(model.read_text() + "\nfrom persam_video.io import probe\n")
    masks = root / PACKAGE / "io" / "masks.py"
    masks.write_text(masks.read_text() + "\nfrom persam_video.io.writer import VideoWriter\n")
    writer = root / PACKAGE / "io" / "writer.py"
    writer.write_text(writer.read_text() + "\nfrom persam_video.io.masks import read_mask\n")
    graph = import_graph(root)
    assert "persam_video.model.spec (layer 1) imports persam_video.io.probe (layer 1)" in (
        layer_violations(graph)
    )
    assert ["persam_video.io.masks", "persam_video.io.writer", "persam_video.io.masks"] in (
        cycles(graph)
    )
