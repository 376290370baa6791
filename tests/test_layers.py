"""Every module on its floor: the import graph of ``hqsam_edge`` (lazy imports inside functions included) has no
cycle, and no module imports from a floor above its own.

The floors, from the bottom (README, "Layout"): the version, the error types, signals and temporaries' owners
-> leaf modules (atomic writes, file digests, platform detection, what a user names, metrics, progress, tables,
timing calls)
-> ``data`` ->
``model`` ->
``export`` (graph contract, profiles, graphs, manifest) ->
``runtime`` (backends, Predictor, the one comparison) -> ``calib`` (precision graphs) -> ``engines`` (TensorRT)
-> ``pipeline`` (the verified export and build steps) -> ``eval``, ``train``, ``benchmarks`` -> ``apps``,
``serve`` -> ``video`` (tracking; it writes with ``apps``' RLE and colours) -> what the command line prints
(``console``) -> the command line and the package's own entry points.

Imports under ``if TYPE_CHECKING:`` count too: an annotation names a module the code depends on, and a
type-only cycle is a cycle of design even when Python never runs it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hqsam_edge"
FLOORS = [
    {"_version", "errors", "interrupts", "owners"},
    {"atomic", "digest", "hardware", "inputs", "metrics", "progress", "tables", "timing"},
    {"data"},
    {"model"},
    {"export"},
    {"runtime"},
    {"calib"},
    {"engines"},
    {"pipeline"},
    {"eval", "train", "benchmarks"},
    {"apps", "serve"},
    {"video"},
    {"console"},
    {"cli", "__init__"},
]
FLOOR = {part: level for level, parts in enumerate(FLOORS) for part in parts}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """The ``hqsam_edge`` modules ``path`` imports, anywhere in it (functions and type-checking blocks included)."""
    tree = ast.parse(path.read_text())
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "hqsam_edge")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "hqsam_edge":
                modules = [alias.name for alias in node.names  # `from . import contract` names a module
                           if (PACKAGE.parent / (target.replace(".", "/") + f"/{alias.name}.py")).exists()]
                found.update(f"{target}.{m}" for m in modules)
                if len(modules) < len(node.names):
                    found.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(here)
    return found


def floor_of(module: str) -> tuple[str, int]:
    parts = module.split(".")
    part = parts[1] if len(parts) > 1 else "__init__"
    return part, FLOOR[part]


GRAPH = {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_part_has_a_floor():
    parts = {module.split(".")[1] for module in GRAPH if "." in module}
    assert parts <= set(FLOOR), f"parts without a floor: {sorted(parts - set(FLOOR))}"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_stay_on_or_below_their_floor(module):
    part, level = floor_of(module)
    for target in sorted(GRAPH[module]):
        if target == "hqsam_edge":
            raise AssertionError(f"{module} imports the whole package; import the module it needs")
        target_part, target_level = floor_of(target)
        if target_part == part:
            continue
        assert target_level < level, f"{module} (floor {level}, {part}) imports {target} (floor {target_level})"


def test_no_import_cycles():
    resolved = {m: {t for t in targets if t in GRAPH} for m, targets in GRAPH.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(resolved[module]):
            if state.get(target) == 1:
                cycle = path[path.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                walk(target)
        path.pop()
        state[module] = 2

    for module in sorted(resolved):
        if module not in state:
            walk(module)


def test_the_checker_sees_lazy_imports_and_cycles():
    """Negative control: a lazy import inside a function counts, so does one under ``TYPE_CHECKING``, and a
    made-up cycle is found."""
    assert "hqsam_edge.runtime.tensorrt_backend" in GRAPH["hqsam_edge.runtime.open"]  # imported inside a function
    assert "hqsam_edge.export.contract" in GRAPH["hqsam_edge.runtime.predictor"]  # `from ..export import contract`
    assert "hqsam_edge.export.manifest" in GRAPH["hqsam_edge.runtime.base"]  # only under TYPE_CHECKING
    assert "hqsam_edge.engines.recipe" in GRAPH["hqsam_edge.engines.tensorrt_build"]  # only under TYPE_CHECKING
    saved = GRAPH["hqsam_edge.export.contract"]
    GRAPH["hqsam_edge.export.contract"] = saved | {"hqsam_edge.runtime.predictor"}
    try:
        with pytest.raises(AssertionError, match="import cycle"):
            test_no_import_cycles()
        with pytest.raises(AssertionError, match="imports hqsam_edge.runtime.predictor"):
            test_imports_stay_on_or_below_their_floor("hqsam_edge.export.contract")
    finally:
        GRAPH["hqsam_edge.export.contract"] = saved
