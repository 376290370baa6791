"""The benchmark harness and `hqsam-edge bench`, on vit_tiny with one iteration."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from hqsam_edge.benchmarks import harness, report
from hqsam_edge.cli import app

REQUIRED = {"model", "backbone", "variant", "backend", "precision", "device", "params_mib", "learnable_mib",
            "encoder_ms", "decoder_ms", "e2e_ms", "fps", "peak_mem_mib"}


@pytest.fixture(scope="module")
def folder(tiny_folder):
    return tiny_folder


def test_rows_torch_hq_and_sam_in_own_processes():
    targets = [harness.Target("vit_tiny", "hq", "torch"), harness.Target("vit_tiny", "sam", "torch")]
    rows = harness.run_rows(targets, iters=1, warmup=0, progress=False)
    hq, sam = rows
    assert hq.error is None and sam.error is None
    for r in rows:
        assert r.encoder_ms > 0 and r.decoder_ms > 0 and r.e2e_ms > r.decoder_ms
        assert math.isclose(r.fps, 1000 / r.e2e_ms)
        assert r.peak_mem_mib > 100 and r.memory_kind == "cpu peak RSS"
        assert r.decoder_16box_ms > r.decoder_ms  # the decoder really ran 16 prompts
    assert hq.learnable_mib == pytest.approx(1.71, abs=0.01) and sam.learnable_mib is None
    text = report.markdown(rows)
    assert "| Light HQ-SAM | torch | fp32 | cpu | 40.4 (40.3) |" in text and "(41.2)" in text
    assert "Cost of HQ" in text and "+8.7%" in text  # the paper's 44.8 / 41.2


def test_scaling(folder, monkeypatch):
    monkeypatch.setattr(harness, "PROMPT_SCALING", (1, 8))
    monkeypatch.setattr(harness, "BATCH_SCALING", (1, 2))
    row = harness.measure(harness.Target("vit_tiny", "hq", "onnxruntime", folder=str(folder)), 1, 1, True, "")
    prompts = row.scaling["decoder_ms_by_prompts"]
    assert set(prompts) == {"1", "8"} and prompts["8"] > prompts["1"]
    assert set(row.scaling["encoder_images_per_s_by_batch"]) == {"1", "2"}
    assert "Scaling" in report.markdown([row])


def test_cli_bench_folder_writes_json_markdown_plot(folder, tmp_path):
    j, md, png = tmp_path / "b.json", tmp_path / "b.md", tmp_path / "b.png"
    result = CliRunner().invoke(app, ["bench", str(folder), "--backend", "onnxruntime", "--backend", "tensorrt",
                                      "--iters", "1", "--warmup", "0", "--json", str(j), "--markdown", str(md),
                                      "--plot", str(png)])
    assert result.exit_code == 0, result.output
    rows = json.loads(j.read_text())
    assert len(rows) == 2 and REQUIRED <= set(rows[0])
    ort_row, trt_row = rows
    assert ort_row["backend"] == "onnxruntime" and ort_row["error"] is None and ort_row["encoder_ms"] > 0
    from hqsam_edge.hardware import this_platform

    here = this_platform()  # where each figure was measured (Jetson model, JetPack, power mode, GPU)
    assert ort_row["machine"]["summary"] == here.summary() and ort_row["machine"]["cpu_count"] == here.cpu_count
    assert f"Measured on: {here.summary()}" in md.read_text()
    assert "not usable" in trt_row["error"] or "no tensorrt" in trt_row["error"]
    assert "| Light HQ-SAM | onnxruntime |" in md.read_text()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_bench_bad_input(tmp_path):
    result = CliRunner().invoke(app, ["bench", str(tmp_path / "missing")])
    assert result.exit_code != 0 and result.stderr.startswith("error: artifact folder not found")
    result = CliRunner().invoke(app, ["bench", "--backbone", "vit_x"])
    assert result.exit_code != 0 and "unknown backbone" in result.stderr
