"""Static check of the TensorRT code against TensorRT's type stubs (no GPU or TensorRT needed).

A removed API (``execute_async_v2``, ``build_engine``, ``max_workspace_size``,
``get_binding_*``) or a wrong signature in ``engines/`` or the tensorrt
runtime fails here. Needs mypy and ``tensorrt-stubs`` (TensorRT 10.13),
installed with ``pip install --no-deps tensorrt-stubs`` (its dependencies are
TensorRT itself). The stubs ship as a plain ``tensorrt`` package without
``py.typed``, and a few stub lines are not valid Python (the keyword ``in`` as
a parameter name, a parameter without default after defaulted ones), so the
test copies them to a folder on MYPYPATH and mends those lines.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FILES = [ROOT / "hqsam_edge/engines/tensorrt_build.py", ROOT / "hqsam_edge/engines/recipe.py",
         ROOT / "hqsam_edge/engines/trtexec.py", ROOT / "hqsam_edge/runtime/tensorrt_backend.py"]


def _stub_dirs() -> list[Path]:
    """The stubs' two folders, wherever ``tensorrt-stubs`` put them; [] where they are not (pip TensorRT's own
    ``tensorrt_bindings`` holds the compiled module and no ``.pyi``)."""
    spec = importlib.util.find_spec("tensorrt_bindings")
    if spec is None or not spec.submodule_search_locations:
        return []
    for location in spec.submodule_search_locations:
        bindings = Path(location)
        package = bindings.parent / "tensorrt"
        if (bindings / "tensorrt.pyi").is_file() and (package / "__init__.pyi").is_file():
            return [bindings, package]
    return []


pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None or not _stub_dirs(),
    reason="needs mypy and tensorrt-stubs: pip install mypy && pip install --no-deps tensorrt-stubs",
)


def _mypy(tmp_path: Path, files: list[Path]) -> subprocess.CompletedProcess:
    stubs = tmp_path / "stubs"
    for d in _stub_dirs():
        shutil.copytree(d, stubs / d.name, dirs_exist_ok=True)
    pyi = stubs / "tensorrt_bindings" / "tensorrt.pyi"
    text = re.sub(r"([(,] ?)in: ", r"\1in_: ", pyi.read_text())  # `in` is a keyword
    text = text.replace(", channel_axis: int) -> IScaleLayer", ", channel_axis: int = ...) -> IScaleLayer")
    pyi.write_text(text)
    config = tmp_path / "mypy.ini"
    config.write_text(
        "[mypy]\nfollow_imports = silent\nignore_missing_imports = True\ncheck_untyped_defs = True\n"
        "[mypy-tensorrt_bindings.*]\nignore_errors = True\n[mypy-tensorrt.*]\nignore_errors = True\n"
    )
    env = {**os.environ, "MYPYPATH": str(stubs)}
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(config), "--cache-dir",
                           str(tmp_path / "cache"), *map(str, files)], capture_output=True, text=True, cwd=ROOT,
                          env=env)


def test_tensorrt_code_typechecks_against_stubs(tmp_path):
    result = _mypy(tmp_path, FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_check_catches_removed_apis(tmp_path):
    """Negative control: the same check flags APIs that TensorRT 10 removed."""
    bad = tmp_path / "bad_trt.py"
    bad.write_text(
        "import tensorrt as trt\n\n"
        "def f(engine: trt.ICudaEngine, config: trt.IBuilderConfig) -> None:\n"
        "    context = engine.create_execution_context()\n"
        "    context.execute_async_v2([], 0)\n"
        "    config.max_workspace_size = 1 << 30\n"
        "    engine.get_binding_shape(0)\n"
    )
    result = _mypy(tmp_path, [bad])
    assert result.returncode != 0
    for api in ("execute_async_v2", "max_workspace_size", "get_binding_shape"):
        assert api in result.stdout, result.stdout
