"""The Python environment of the real Triton server the tests and ``benchmarks/triton_load.py`` start.

A virtual environment with ``nvidia-pytriton`` (its bundled ``tritonserver`` and Python-backend stubs) and what
the repository's ``model.py`` files import (``hqsam_edge.serve.server.SERVER_REQUIREMENTS``), plus this checkout
installed editable without its dependencies. Built once under ``.cache/triton-venv/<hash of the requirements>``
and reused; ``.ci/run`` builds it before pytest::

    python -m tests.serve.triton_venv          # build (a few minutes, once), print its python
    python -m tests.serve.triton_venv --path   # print where it is (or would be); build nothing

torch is borrowed, not installed: PyPI's torch is the CUDA build (gigabytes of CUDA wheels), so a ``.pth``
file puts this test environment's site-packages after the server environment's own. The server's own
packages (numpy 1 above all) come first; torch and what only it needs come from here.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

from hqsam_edge.serve.server import SERVER_REQUIREMENTS

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "triton-venv"
READY = "hqsam-edge-ready"  # written last: a half-built environment is not one
BORROW_PTH = "hqsam_edge_test_torch.pth"


def borrowed_site() -> Path | None:
    """The site-packages folder that holds this environment's torch (None: no torch here, install it)."""
    spec = importlib.util.find_spec("torch")
    return Path(spec.origin).resolve().parents[1] if spec and spec.origin else None


def requirements() -> tuple[str, ...]:
    """What ``pip install`` gets: ``SERVER_REQUIREMENTS``, less torch when it is borrowed."""
    if borrowed_site() is None:
        return SERVER_REQUIREMENTS
    return tuple(r for r in SERVER_REQUIREMENTS if not r.startswith("torch"))


def key() -> str:
    """The environment's name: its requirements, where torch comes from, the Python minor version (the stub's)."""
    text = "\n".join([f"python{sys.version_info.major}.{sys.version_info.minor}", str(borrowed_site()),
                      *requirements()])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def venv_dir() -> Path:
    return CACHE / key()


def venv_python() -> Path | None:
    """The environment's python, or None when it is not built (or was left half-built)."""
    folder = venv_dir()
    python = folder / "bin" / "python"
    return python if (folder / READY).is_file() and python.exists() else None


def _site_packages(python: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip())


def _editable_here(python: Path) -> bool:
    code = "import hqsam_edge, pathlib; print(pathlib.Path(hqsam_edge.__file__).resolve().parents[1])"
    found = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return found.returncode == 0 and Path(found.stdout.strip()) == ROOT


def build(quiet: bool = True) -> Path:
    """Build the environment unless it exists; (re)install this checkout in it when it points elsewhere."""
    python = venv_python()
    pip_quiet = ["-q"] if quiet else []
    if python is None:
        folder = venv_dir()
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
        python = folder / "bin" / "python"
        subprocess.run([str(python), "-m", "pip", "install", *pip_quiet, *requirements()], check=True)
        site = borrowed_site()
        if site is not None:
            (_site_packages(python) / BORROW_PTH).write_text(f"{site}\n")
    if not _editable_here(python):
        subprocess.run([str(python), "-m", "pip", "install", *pip_quiet, "--no-deps", "--no-build-isolation",
                        "-e", str(ROOT)], check=True)
    check = "import numpy, torch, onnxruntime, PIL, pytriton; assert numpy.__version__ < '2', numpy.__version__"
    subprocess.run([str(python), "-c", check], check=True)
    (python.parent.parent / READY).write_text("\n".join(requirements()) + "\n")
    for stale in CACHE.iterdir():  # environments of older requirements
        if stale.is_dir() and stale.name != key():
            shutil.rmtree(stale, ignore_errors=True)
    return python


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", action="store_true", help="print the environment's folder; build nothing")
    args = parser.parse_args(argv)
    print(venv_dir() if args.path else build())
    return 0


if __name__ == "__main__":
    sys.exit(main())
