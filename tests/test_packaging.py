"""The install story: ONNX Runtime's CPU and GPU packages are alternatives, TensorRT's major is pinned, and a
machine with neither ONNX Runtime gets one line saying which to install."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hqsam_edge.cli import app

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]


def _names(requirements: list[str]) -> list[str]:
    import re

    return [re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements]


def test_onnxruntime_packages_are_alternatives():
    """onnxruntime and onnxruntime-gpu both provide the `onnxruntime` module: neither is a hard dependency, so a
    GPU install never has the CPU package shadow the GPU one."""
    extras = PYPROJECT["optional-dependencies"]
    assert not {"onnxruntime", "onnxruntime-gpu"} & set(_names(PYPROJECT["dependencies"]))
    assert _names(extras["cpu"]) == ["onnxruntime"] and _names(extras["gpu"]) == ["onnxruntime-gpu"]
    assert not {"onnxruntime", "onnxruntime-gpu"} & set(_names(extras["dev"]))  # [gpu,dev] installs one package


def test_tensorrt_extra_pins_a_major():
    """A bare `tensorrt` pulls the newest major (11, built for CUDA 13 and a matching driver)."""
    trt = [r for r in PYPROJECT["optional-dependencies"]["tensorrt"] if r.lower().startswith("tensorrt")]
    assert trt and all("<" in r or "==" in r for r in trt) and "tensorrt" not in _names(trt)


@pytest.fixture
def no_onnxruntime(monkeypatch):
    for name in [m for m in sys.modules if m == "onnxruntime" or m.startswith("onnxruntime.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError


def test_without_onnxruntime_one_line_names_both_packages(no_onnxruntime, tiny_folder, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["export", "--random-weights", "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "Traceback" not in result.output
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "hqsam-edge[cpu]" in err and "hqsam-edge[gpu]" in err
    assert not (tmp_path / "x").exists()
    from hqsam_edge import Predictor
    from hqsam_edge.errors import BackendUnavailableError

    with pytest.raises(BackendUnavailableError, match=r"onnxruntime is not installed.*never both"):
        Predictor.from_artifacts(tiny_folder, backend="onnxruntime")
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0 and "onnxruntime is not installed" in result.stdout
