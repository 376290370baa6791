"""benchmarks/gpu_check.py: on a machine without a GPU, one line and a non-zero exit; its report machinery, run
with the checks that need no GPU (``--allow-cpu``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"
torch = pytest.importorskip("torch")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the script runs for real there")
def test_without_a_gpu_one_line_and_exit_2(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], capture_output=True, text=True,
                          cwd=tmp_path)  # from anywhere: it finds the repository itself
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("error: no CUDA GPU here") and list(tmp_path.iterdir()) == []


def test_report_with_the_checks_that_need_no_gpu(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--allow-cpu", "--out", str(tmp_path), "--only", "platform",
                           "--only", "amp train step", "--only", "tensorrt engines"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    checks = {c["name"]: c for c in report["checks"]}
    assert set(checks) == {"platform", "amp train step", "tensorrt engines"}
    assert checks["amp train step"]["status"] == "skipped" and checks["amp train step"]["detail"] == "AMP needs CUDA"
    if not torch.cuda.is_available():
        assert checks["platform"]["status"] == "skipped" and checks["platform"]["figures"]["notes"]
        assert checks["tensorrt engines"]["status"] == "skipped" and checks["tensorrt engines"]["detail"]
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert markdown.startswith(f"GPU check on: {report['machine']}")
    assert "| amp train step | skipped |" in markdown
