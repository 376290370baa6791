"""benchmarks/gpu_check.py: on a machine without a GPU, one line and a non-zero exit; its report machinery, run
with the checks that need no GPU (``--allow-cpu``); the order and budgets of its checks and its report format,
with stand-in checks."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses resolve their module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("gpu_check", None)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the script runs for real there")
def test_without_a_gpu_one_line_and_exit_2(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], capture_output=True, text=True,
                          cwd=tmp_path)  # from anywhere: it finds the repository itself
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("error: no CUDA GPU here") and list(tmp_path.iterdir()) == []


def test_report_with_the_checks_that_need_no_gpu(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--allow-cpu", "--out", str(tmp_path), "--only", "platform",
                           "--only", "amp train step", "--only", "tensorrt fp16", "--only", "tensorrt threads"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    checks = {c["name"]: c for c in report["checks"]}
    assert [c["name"] for c in report["checks"]] == ["platform", "tensorrt fp16", "tensorrt threads", "amp train step"]
    assert checks["amp train step"]["status"] == "skipped" and checks["amp train step"]["detail"] == "AMP needs CUDA"
    assert checks["tensorrt threads"]["status"] == "skipped"
    assert checks["tensorrt threads"]["detail"] == "needs the fp16 engines of this run"
    if not torch.cuda.is_available():
        assert checks["platform"]["status"] == "skipped" and checks["platform"]["figures"]["notes"]
        assert checks["tensorrt fp16"]["status"] == "skipped" and checks["tensorrt fp16"]["detail"]
    assert report["weights"] == "random" and all(c["budget_s"] > 0 for c in report["checks"])
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert markdown.startswith(f"GPU check on: {report['machine']}\nWeights: random\n")
    assert "| amp train step | skipped |" in markdown


def test_native_engines_come_first_and_every_check_has_a_budget(gpu_check):
    names = [name for name, _, _ in gpu_check.CHECKS]
    assert names[0] == "platform" and names[1:4] == ["tensorrt fp32", "tensorrt fp16", "tensorrt int8"]
    engines = [k for k, n in enumerate(names) if n.startswith("tensorrt") or n == "engine tests"]
    assert max(engines) < names.index("onnxruntime providers") < names.index("torch precisions")
    for required in ("tensorrt int8 vs fp16", "tensorrt threads", "tensorrt batch and prompts", "tensorrt reopen",
                     "fp16 stress", "tracking"):
        assert required in names
    assert all(budget > 0 for _, _, budget in gpu_check.CHECKS)
    assert sum(budget for _, _, budget in gpu_check.CHECKS) <= 900  # ten minutes' default, a little over


def test_each_check_runs_in_its_own_budget(gpu_check, tmp_path):
    """A check that does not fit in the time left is skipped and says so; the next that fits still runs; each runs
    with its own deadline; a raise is an error row, a ``Skip`` a skipped one; the report is written after each."""
    seen = {}

    def fits(ctx):
        seen["left"] = ctx.left()
        return "ok", "fine", {"x": 1}

    def skips(ctx):
        ctx.need(1000, "a long step")
        return "ok", "", {}

    def fails(ctx):
        raise RuntimeError("boom\nsecond line")

    checks = [("first", fits, 5.0), ("too long", fits, 1000.0), ("skipping", skips, 5.0), ("failing", fails, 5.0)]
    ctx = gpu_check.Context("cpu", 1, tmp_path, time.monotonic() + 60)
    written = []
    results = gpu_check.run(ctx, after_each=lambda r: written.append(len(r)), checks=checks)
    assert [(c.name, c.status) for c in results] == [("first", "ok"), ("too long", "skipped"), ("skipping", "skipped"),
                                                     ("failing", "error")]
    assert 0 < seen["left"] <= 5.0  # its own budget, not the run's
    assert results[1].detail.startswith("time budget spent") and "needs 1000" in results[1].detail
    assert results[2].detail.startswith("a long step: its budget is spent")
    assert results[3].detail == "RuntimeError: boom" and results[3].figures["traceback"]
    assert written == [1, 2, 3, 4] and ctx.check_deadline == float("inf")
    text = gpu_check.markdown(results, "a machine", "random")
    assert "| check | status | seconds | budget | detail |" in text and "| too long | skipped |" in text
    assert "### first" in text and "### failing" not in text  # an error's traceback stays in the JSON


def test_int8_is_judged_by_the_bounds_of_its_weights(gpu_check, tmp_path):
    from hqsam_edge.runtime.compare import PRECISION_BOUNDS

    random = gpu_check._int8_bounds(gpu_check.Context("cuda", 1, tmp_path, 0.0))
    assert (random.min_sqnr_db, random.min_mean_mask_iou) == (3.0, 0.5)
    real = gpu_check._int8_bounds(gpu_check.Context("cuda", 1, tmp_path, 0.0, checkpoint=tmp_path / "real.pth"))
    assert real == PRECISION_BOUNDS["int8"]
    assert gpu_check._verdict({"a": {"status": "ok"}, "b": {"status": "skipped"}, "c": {"status": "miss"}}) == "miss"
