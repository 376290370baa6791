"""benchmarks/int8_ceiling.py: the split of INT8 time it reports is the recipe's own layers, measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from hqsam_edge.calib.precision_graphs import PrecisionSpec, make_precision_graphs

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "int8_ceiling.py"


def _script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("int8_ceiling", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ceiling_splits_the_recipes_layers(fresh_tiny_folder, tmp_path):
    folder = fresh_tiny_folder(tmp_path / "hq_vit_tiny")
    spec = PrecisionSpec(str(folder), precision="int8", calib_limit=2, heldout=1, min_sqnr_db=0.0, min_mask_iou=0.0)
    artifact = make_precision_graphs(spec)

    # the layers it counts as quantized are exactly those the recipe quantized (all GEMMs, no convolution)
    layers = _script()._quantized_layers(onnx.load(str(folder / artifact.files["encoder"])))
    assert len(layers) == artifact.calibration.quantized_layers == 40
    assert all(name.endswith("/MatMul") for name, _ in layers)

    out = tmp_path / "ceiling.json"
    done = subprocess.run([sys.executable, str(SCRIPT), str(folder), "--runs", "2", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    fig = json.loads(out.read_text())
    assert "ceiling with free integer layers" in done.stdout
    assert fig["fp32_quantized_layers_ms"] > 0 and fig["int8_integer_kernels_ms"] > 0
    assert fig["layer_speedup"] > 1.0  # integer GEMMs beat fp32 ones (2.8-4.7x on this project's CPU)
    total = fig["fp32_quantized_layers_ms"] + fig["fp32_other_ms"]
    assert fig["ceiling"] == pytest.approx(total / fig["int8_other_ms"], abs=0.01)  # from the rounded ms figures
