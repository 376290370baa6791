"""The benchmark harness and `hqsam-edge bench`, on vit_tiny with one iteration."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from hqsam_edge.benchmarks import harness, report
from hqsam_edge.benchmarks.rows import BenchRow, Machine, Memory, Scaling, Sizes, Target, Timings
from hqsam_edge.cli import app

REQUIRED = {"model", "backbone", "variant", "backend", "precision", "device", "params_mib", "learnable_mib",
            "encoder_ms", "decoder_ms", "e2e_ms", "fps", "peak_mem_mib"}


@pytest.fixture(scope="module")
def folder(tiny_folder):
    return tiny_folder


def test_rows_torch_hq_and_sam_in_own_processes():
    targets = [harness.Target("vit_tiny", "hq", "torch"), harness.Target("vit_tiny", "sam", "torch")]
    rows = harness.run_rows(targets, iters=1, warmup=0)
    hq, sam = rows
    assert hq.error is None and sam.error is None
    for r in rows:
        t = r.timings
        assert t.encoder_ms > 0 and t.decoder_ms > 0 and t.e2e_ms > t.decoder_ms
        assert math.isclose(t.fps, 1000 / t.e2e_ms)
        assert r.memory.peak_mib > 100 and r.memory.kind == "cpu peak RSS"
        assert t.decoder_16box_ms > t.decoder_ms  # the decoder really ran 16 prompts
    assert hq.sizes.learnable_mib == pytest.approx(1.71, abs=0.01) and sam.sizes.learnable_mib is None
    text = report.markdown(rows)
    assert "| Light HQ-SAM | torch | fp32 | cpu | 40.4 (40.3) |" in text and "(41.2)" in text
    assert "Cost of HQ" in text and "+8.7%" in text  # the paper's 44.8 / 41.2


def test_scaling(folder, monkeypatch):
    monkeypatch.setattr(harness, "PROMPT_SCALING", (1, 8))
    monkeypatch.setattr(harness, "BATCH_SCALING", (1, 2))
    row = harness.measure(harness.Target("vit_tiny", "hq", "onnxruntime", folder=str(folder)), 1, 1, True, "")
    prompts = row.scaling.decoder_ms_by_prompts
    assert set(prompts) == {"1", "8"} and prompts["8"] > prompts["1"]
    assert set(row.scaling.encoder_images_per_s_by_batch) == {"1", "2"} and row.scaling.skipped_batches == {}
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


def test_rounds_are_interleaved_and_keep_the_median(folder, monkeypatch):
    calls, measured = [], {}
    real = harness._measure_safely

    def recording(target, *args):
        row = real(target, *args)
        calls.append(target.precision)
        measured.setdefault(target.precision, []).append(row)
        return row

    monkeypatch.setattr(harness, "_measure_safely", recording)
    targets = [harness.Target("vit_tiny", "hq", "onnxruntime", precision=p, folder=str(folder))
               for p in ("fp32", "int8")]
    fp32, int8 = harness.run_rows(targets, iters=1, warmup=0, isolate=False, rounds=3)
    assert calls == ["fp32", "int8"] * 3  # drift hits both rows alike
    rounds = measured["fp32"]
    assert fp32.rounds == 3 and fp32.iters == 3 and fp32.error is None
    assert fp32.timings.encoder_ms == sorted(r.timings.encoder_ms for r in rounds)[1]
    assert fp32.timings.e2e_ms == sorted(r.timings.e2e_ms for r in rounds)[1]
    assert fp32.memory.peak_mib == max(r.memory.peak_mib for r in rounds)
    assert int8.error and int8.rounds == 3  # no int8 graph in this folder: the failure is kept, not averaged away


def test_combine_rounds_even_counts_and_missing_device_times():
    def row(e2e, gpu):
        timings = Timings(encoder_ms=e2e - 5, encoder_p90_ms=e2e - 4, decoder_ms=5.0, decoder_p90_ms=6.0,
                          decoder_10pt_ms=5.0, decoder_16box_ms=9.0, e2e_ms=e2e, e2e_p90_ms=e2e + 1, gpu_encoder_ms=gpu)
        return BenchRow(Target("vit_tiny", "hq", "torch"), "m", Sizes(1.0, None), timings,
                        Memory(e2e * 10, "gpu peak allocated"), Machine("cuda"), iters=2)
    merged = harness.combine_rounds([row(10.0, 4.0), row(20.0, None)])
    t = merged.timings
    assert t.e2e_ms == 15.0 and t.fps == pytest.approx(1000 / 15)  # FPS agrees with the e2e shown
    assert t.gpu_encoder_ms == 4.0 and merged.memory.peak_mib == 200.0 and merged.iters == 4 and merged.rounds == 2
    assert harness.combine_rounds([row(10.0, None), row(30.0, None)]).timings.gpu_encoder_ms is None


def test_report_speed_vs_fp32_from_the_same_run(folder):
    from dataclasses import replace

    fp32 = harness.run_rows([harness.Target("vit_tiny", "hq", "onnxruntime", folder=str(folder))], iters=1,
                            warmup=0, isolate=False)[0]
    def variant(row, error=None, precision="int8", folder=None, **timings):
        target = replace(row.target, precision=precision, folder=folder or row.target.folder)
        return replace(row, target=target, timings=replace(row.timings, **timings), error=error)

    int8 = variant(fp32, encoder_ms=fp32.timings.encoder_ms / 2, e2e_ms=fp32.timings.e2e_ms / 1.25)
    failed = variant(fp32, precision="fp16", error="not built")
    text = report.markdown([fp32, int8, failed])
    assert "Speed vs fp32 in this run (1 interleaved round(s), median)" in text
    assert "| Light HQ-SAM | onnxruntime | int8 | 2.00x | 1.25x |" in text
    assert "| fp16 | " not in text.split("Speed vs fp32")[1]
    assert "Speed vs fp32" not in report.markdown([fp32])
    # two folders of one model (say, two int8 recipes): each int8 row against its own folder's fp32 row
    other = [variant(fp32, precision="fp32", folder="/x/b", encoder_ms=100.0),
             variant(fp32, folder="/x/b", encoder_ms=80.0)]
    text = report.markdown([fp32, int8, *other])
    assert f"| Light HQ-SAM ({fp32.target.folder}) | onnxruntime | int8 | 2.00x |" in text
    assert "| Light HQ-SAM (/x/b) | onnxruntime | int8 | 1.25x |" in text


def test_cli_bench_reference_without_the_official_package(monkeypatch):
    """--reference times segment_anything_hq (the dev extra's test oracle): without it, one line saying how to
    install it, before any row runs."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "segment_anything_hq" else real(name, *a))
    result = CliRunner().invoke(app, ["bench", "--reference", "--backend", "torch", "--iters", "1"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "segment_anything_hq" in err and "pip install segment-anything-hq" in err


# The keys of `bench --json`, in their order: the fields of the flat BenchRow of every release before the row
# was split into typed parts (tests and users' scripts read them).
JSON_KEYS = ["model", "backbone", "variant", "backend", "precision", "device", "params_mib", "learnable_mib",
             "encoder_ms", "encoder_p90_ms", "decoder_ms", "decoder_p90_ms", "decoder_10pt_ms", "decoder_16box_ms",
             "e2e_ms", "e2e_p90_ms", "fps", "peak_mem_mib", "memory_kind", "gpu_encoder_ms", "iters", "rounds",
             "folder", "versions", "machine", "scaling", "notes", "error"]


def test_json_record_keeps_the_flat_keys_and_values(tmp_path):
    from hqsam_edge.hardware import Platform

    here = Platform(arch="aarch64", system="Linux", python="3.10", jetson_model="Jetson AGX Orin", jetpack="6.2")
    timings = Timings(encoder_ms=40.0, encoder_p90_ms=41.0, decoder_ms=5.0, decoder_p90_ms=6.0, decoder_10pt_ms=7.0,
                      decoder_16box_ms=9.0, e2e_ms=50.0, e2e_p90_ms=52.0, gpu_encoder_ms=38.0)
    row = BenchRow(Target("vit_tiny", "hq", "tensorrt", "int8", folder="/a/b", checkpoint="c.pth"), "Light HQ-SAM",
                   Sizes(40.4, 1.71), timings, Memory(300.0, "cpu peak RSS"),
                   Machine("Orin", here, {"numpy": "2.0"}),
                   scaling=Scaling({"1": 5.0}, {"1": 20.0}, {"2": 1.0}), iters=10, rounds=3, notes=("n",))
    report.write_json([row], tmp_path / "rows.json")
    record = json.loads((tmp_path / "rows.json").read_text())[0]
    assert list(record) == JSON_KEYS
    assert record == {
        "model": "Light HQ-SAM", "backbone": "vit_tiny", "variant": "hq", "backend": "tensorrt", "precision": "int8",
        "device": "Orin", "params_mib": 40.4, "learnable_mib": 1.71, "encoder_ms": 40.0, "encoder_p90_ms": 41.0,
        "decoder_ms": 5.0, "decoder_p90_ms": 6.0, "decoder_10pt_ms": 7.0, "decoder_16box_ms": 9.0, "e2e_ms": 50.0,
        "e2e_p90_ms": 52.0, "fps": 20.0, "peak_mem_mib": 300.0, "memory_kind": "cpu peak RSS",
        "gpu_encoder_ms": 38.0, "iters": 10, "rounds": 3, "folder": "/a/b", "versions": {"numpy": "2.0"},
        "machine": {**here.to_dict(), "summary": here.summary()},
        "scaling": {"decoder_ms_by_prompts": {"1": 5.0}, "encoder_images_per_s_by_batch": {"1": 20.0},
                    "skipped_batches": {"2": 1.0}},
        "notes": ["n"], "error": None}
    # a row that could not run: NaN figures, no machine record, no scaling (as before)
    failed = harness._row(Target("vit_tiny", "sam", "onnxruntime"), 1, Timings.not_run(), Memory.not_run(),
                          Machine("-"), error="no graph")
    record = failed.to_dict()
    assert list(record) == JSON_KEYS and record["error"] == "no graph" and record["model"] == "MobileSAM"
    assert math.isnan(record["fps"]) and math.isnan(record["e2e_ms"]) and record["gpu_encoder_ms"] is None
    assert (record["device"], record["memory_kind"], record["machine"], record["scaling"], record["versions"]) == \
        ("-", "-", {}, {}, {})
    assert Scaling({"1": 5.0}, {}).to_dict() == {"decoder_ms_by_prompts": {"1": 5.0},
                                                 "encoder_images_per_s_by_batch": {}}
