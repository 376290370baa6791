"""``export`` and ``build --precision int8 --layer-search`` stopped by SIGINT / SIGTERM at several points: exit
130 / 143 with one line, no staging folder, no temporary file, the manifest unchanged or complete; killed
with SIGKILL: the next run removes what the dead process left once it starts, and succeeds.

Real processes (the command line run by ``small_export.py`` / ``small_build.py``: smaller problems, the
same code path), signals sent when the work reaches a stage (a file or folder
appears), so the points do not depend on this machine's speed. ``TMPDIR`` is a test folder, so that the
temporaries of the libraries the commands call (``tempfile``) are checked too.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hqsam_edge.export.manifest import read_manifest
from hqsam_edge.owners import MARK
from hqsam_edge.pipeline.verify import verify_folder

ROOT = Path(__file__).resolve().parents[2]
SMALL_BUILD = Path(__file__).with_name("small_build.py")
SMALL_EXPORT = Path(__file__).with_name("small_export.py")  # TinyViT with one block a stage


def start(cmd: list[str], tmpdir: Path) -> subprocess.Popen:
    tmpdir.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmpdir)}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def wait_for(proc: subprocess.Popen, ready: Callable[[], bool], what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"ended before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"never reached {what}"
        time.sleep(0.02)


def interrupt(cmd: list[str], tmpdir: Path, ready: Callable[[], bool], what: str, sig: int) -> str:
    """Run ``cmd`` until ``ready()``, send ``sig``; its stderr's error line (SIGINT / SIGTERM: checked to be one
    line, after the progress lines of the stages that ran)."""
    proc = start(cmd, tmpdir)
    wait_for(proc, ready, what)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == (-sig if sig == signal.SIGKILL else 128 + sig), f"{what}: {proc.returncode} {err}"
    if sig != signal.SIGKILL:
        name = signal.Signals(sig).name
        *stages, err = err.strip().splitlines()
        assert all(re.match(r"\[ *\d+\.\d s\] ", line) for line in stages) and "Traceback" not in err, stages
        assert err.startswith(f"error: interrupted by {name}: "), err
    return err


def litter(*folders: Path) -> list[Path]:
    """Temporaries of ours under ``folders``."""
    return [p for folder in folders if folder.exists() for p in folder.rglob(f"*{MARK}*")]


def leftovers(tmpdir: Path) -> list[Path]:
    """What is left in ``TMPDIR``, but the caches libraries keep there on purpose, across runs (ONNX Runtime's
    session id ``.ses``, torch's ``torchinductor_<user>``)."""
    return [p for p in tmpdir.iterdir() if p.name != ".ses" and not p.name.startswith("torchinductor_")]


def found(folder: Path, pattern: str) -> bool:
    return folder.exists() and any(folder.glob(pattern))


def test_export_interrupted_at_several_points_leaves_nothing(tmp_path):
    out, tmpdir = tmp_path / "hq_vit_tiny", tmp_path / "tmp"
    cmd = [sys.executable, str(SMALL_EXPORT), "export", "--random-weights", "--out", str(out)]
    staging = f".{out.name}.{MARK}*"
    points = [(signal.SIGINT, "the staging folder", staging),
              (signal.SIGTERM, "the encoder graph traced", f"{staging}/.raw_encoder.onnx/graph.onnx"),
              (signal.SIGTERM, "both graphs written (verification)", f"{staging}/decoder.onnx")]
    for sig, what, pattern in points:
        err = interrupt(cmd, tmpdir, lambda: found(tmp_path, pattern), what, sig)
        assert re.search(rf": removed {re.escape(str(tmp_path))}/\.hq_vit_tiny\.{MARK}\S+, .*; wrote no artifact "
                         rf"folder at {re.escape(str(out))}$", err.strip()), err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"] and leftovers(tmpdir) == [], what

    # killed while it traces (the other points ran to verification: a kill there costs 15 s more, proves no more)
    interrupt(cmd, tmpdir, lambda: found(tmp_path, f"{staging}/.raw_encoder.onnx"), "tracing", signal.SIGKILL)
    left = litter(tmp_path)
    assert any(p.parent == tmp_path for p in left) and any(p.parent == tmpdir for p in left)  # what a kill leaves
    run = start(cmd, tmpdir)
    wait_for(run, lambda: found(tmp_path, f"{staging}-{run.pid}-*"), "the next run's staging")
    assert not any(p.exists() for p in left)  # gone once the next run has started
    _, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    assert litter(tmp_path) == [] and leftovers(tmpdir) == []
    assert not verify_folder(out).problems

    before = (out / "manifest.json").read_bytes()
    interrupt([*cmd, "--overwrite"], tmpdir, lambda: found(tmp_path, f"{staging}/.raw_encoder.onnx"),
              "re-export over the folder", signal.SIGTERM)
    assert (out / "manifest.json").read_bytes() == before and not verify_folder(out).problems
    assert litter(tmp_path) == []


@pytest.fixture
def folder(fresh_tiny_folder, tmp_path):
    return fresh_tiny_folder(tmp_path / "hq_vit_tiny")


def test_int8_layer_search_build_interrupted_at_several_points_then_finishes(folder, tmp_path):
    tmpdir = tmp_path / "tmp"
    cmd = [sys.executable, str(SMALL_BUILD), "build", str(folder), "--precision", "int8", "--layer-search",
           "--calib-method", "max", "--calib-limit", "2", "--min-sqnr-db", "32", "--min-mask-iou", "0.5"]
    private = f"hqsam-edge.{MARK}*"
    points = [(signal.SIGTERM, "calibration", lambda: found(tmpdir, f"{private}/hqsam-calib-*")),
              (signal.SIGINT, "the layer search", lambda: found(tmpdir, f"{private}/hqsam-sensitivity-*"))]
    for sig, what, ready in points:
        before = (folder / "manifest.json").read_bytes()
        err = interrupt(cmd, tmpdir, ready, what, sig)
        assert re.search(rf": removed {re.escape(str(folder))}/\.build\.{MARK}\S+, .*; kept {re.escape(str(folder))} "
                         r"with the artifacts its manifest.json lists$", err.strip()), err
        assert litter(tmp_path) == [] and leftovers(tmpdir) == [], what
        manifest = read_manifest(folder)  # unchanged, or complete: the calibration cache recorded
        assert (folder / "manifest.json").read_bytes() == before or set(manifest.files) > {"encoder.onnx"}
        assert [a.precision for a in manifest.artifacts] == ["fp32"] and not list(folder.glob("encoder.int8*"))
        assert not verify_folder(folder).problems

    interrupt(cmd, tmpdir, lambda: found(folder, f".build.{MARK}*/encoder.int8.onnxruntime.onnx"),
              "an int8 graph in staging", signal.SIGKILL)
    left = litter(tmp_path)
    assert any(p.parent == folder for p in left) and any(p.parent == tmpdir for p in left)
    run = start(cmd, tmpdir)
    wait_for(run, lambda: found(folder, f".build.{MARK}*-{run.pid}-*"), "the next run's staging")
    assert not any(p.exists() for p in left)
    _, err = run.communicate(timeout=600)
    assert run.returncode == 0, err
    assert litter(tmp_path) == [] and leftovers(tmpdir) == []
    manifest = read_manifest(folder)
    assert [a.precision for a in manifest.artifacts] == ["fp32", "int8"] and not verify_folder(folder).problems
    assert manifest.find("onnxruntime", "int8").calibration.layer_search is not None
