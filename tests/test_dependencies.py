"""Every module imports, and every command's --help runs, without TensorRT or pycuda.

After Polygraphy's tests/mod/test_dependencies.py: heavy optional imports must
stay inside the functions that need them.
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

import hqsam_edge
from hqsam_edge.cli import app

MODULES = sorted(m.name for m in pkgutil.walk_packages(hqsam_edge.__path__, "hqsam_edge."))


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name):
    importlib.import_module(name)


def test_no_tensorrt_or_pycuda_imported_at_module_level():
    code = (
        "import sys, importlib, pkgutil, hqsam_edge\n"
        "for m in pkgutil.walk_packages(hqsam_edge.__path__, 'hqsam_edge.'): importlib.import_module(m.name)\n"
        "bad = [m for m in ('tensorrt', 'pycuda', 'pycuda.driver') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_model_package_never_imports_onnx():
    code = "import sys, hqsam_edge.model, hqsam_edge.model.build; assert 'onnx' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def _commands():
    import typer.main

    group = typer.main.get_command(app)
    return sorted(group.commands)


@pytest.mark.parametrize("command", _commands())
def test_command_help(command):
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
