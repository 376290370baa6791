"""Layer sensitivity: the switch graph computes what the Q/DQ graphs compute, and the search meets its bound."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hqsam_edge.calib import sensitivity as S
from hqsam_edge.calib import precision_graphs
from hqsam_edge.calib.recipes import (BACKEND_OPS, DYNAMIC_OPS, WEIGHT_QMAX, dynamic_weight_bits, int8_dynamic_graph,
                                     int8_graph, weight_qmax)
from hqsam_edge.calib.precision_graphs import PrecisionSpec, make_precision_graphs
from hqsam_edge.errors import ParityError
from hqsam_edge.runtime.base import ModelInfo
from hqsam_edge.runtime.compare import sqnr_db
from hqsam_edge.runtime.onnxruntime_backend import OnnxRuntimeBackend

# Light HQ-SAM's first attention stage only (8 GEMMs, 22 layers with the convolutions): seconds, not minutes
SMALL = ("patch_embed", "neck", "layers.2", "layers.3")


def encode(encoder, decoder, image, exact_qdq=False) -> dict:
    """The encoder outputs of ``image`` from ONNX Runtime on the CPU (``exact_qdq``: Q/DQ as written)."""
    backend = OnnxRuntimeBackend(ModelInfo("vit_tiny", "hq"), encoder, decoder, providers=["cpu"], exact_qdq=exact_qdq)
    with backend:
        return backend.features_to_numpy(backend.encode(image))


@pytest.fixture(scope="module")
def folder(fresh_tiny_folder, tmp_path_factory):
    return fresh_tiny_folder(tmp_path_factory.mktemp("sens") / "hq_vit_tiny")


@pytest.fixture(scope="module")
def calibrated(folder):
    spec = PrecisionSpec(str(folder), precision="int8", calib_method="max", calib_limit=2, heldout=1,
                         int8_exclude=SMALL)
    ranges, targets = precision_graphs.calibrate(folder, folder / "encoder.onnx", spec)
    return spec, ranges, targets, list(precision_graphs.calibration_set(spec))[:1]


@pytest.mark.parametrize("graph_backend", ["onnxruntime", "tensorrt"])
def test_switch_graph_computes_the_qdq_graph(folder, calibrated, tmp_path, graph_backend):
    spec, ranges, targets, feeds = calibrated
    targets = [t for t in targets if t.op_type in BACKEND_OPS[graph_backend]]
    path = S.switch_graph(folder / "encoder.onnx", tmp_path / "switch.onnx", ranges, targets,
                          graph_backend == "tensorrt", weight_qmax(graph_backend))
    runner = S.SwitchRunner(path, len(targets), feeds)
    image = feeds[0]["image"]
    for ours, ref in zip(runner.reference[0], encode(folder / "encoder.onnx", folder / "decoder.onnx", image).values()):
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)  # switches off: the fp32 graph

    def qdq(layers):  # the real Q/DQ graph, run with its arithmetic exact
        int8_graph(folder / "encoder.onnx", tmp_path / "qdq.onnx", ranges, [targets[i] for i in layers], graph_backend)
        return list(encode(tmp_path / "qdq.onnx", folder / "decoder.onnx", image, exact_qdq=True).values())

    def switched(layers):
        switch = np.zeros(len(targets), np.float32)
        switch[layers] = 1
        return runner.session.run(None, {**feeds[0], S.SWITCH: switch})

    layer = next(i for i, t in enumerate(targets) if t.op_type == "MatMul")
    for ours, theirs in zip(switched([layer]), qdq([layer])):
        assert sqnr_db(ours, theirs) > 55  # one layer: the same arithmetic
    if graph_backend == "onnxruntime":
        every = list(range(len(targets)))
        for ours, theirs in zip(switched(every), qdq(every)):
            assert sqnr_db(ours, theirs) > 50
    # the round trip really quantizes: a layer on costs SQNR, more layers cost more
    assert 20 < runner.sqnr([layer]) < 60 and runner.sqnr(range(len(targets))) < runner.sqnr([layer])


def test_switch_graph_computes_the_dynamic_graph(folder, calibrated, tmp_path):
    """Activations ranged per call: the switch graph's DynamicQuantizeLinear round trip is what ONNX Runtime's fused
    dynamic GEMMs compute (no ranges needed), one layer and every layer."""
    _, _, targets, feeds = calibrated
    targets = [t for t in targets if t.op_type in DYNAMIC_OPS]
    bits = dynamic_weight_bits()  # 7 where this CPU's uint8 x int8 GEMMs saturate
    runner = S.SwitchRunner(S.switch_graph(folder / "encoder.onnx", tmp_path / "switch.onnx", {}, targets, False,
                                           WEIGHT_QMAX[bits], dynamic=True), len(targets), feeds)
    image = feeds[0]["image"]

    def real(layers):  # the dynamic graph as a user runs it (ONNX Runtime's fusions on)
        int8_dynamic_graph(folder / "encoder.onnx", tmp_path / "dyn.onnx", [targets[i] for i in layers], bits)
        return list(encode(tmp_path / "dyn.onnx", folder / "decoder.onnx", image).values())

    def switched(layers):
        switch = np.zeros(len(targets), np.float32)
        switch[layers] = 1
        return runner.session.run(None, {**feeds[0], S.SWITCH: switch})

    every = list(range(len(targets)))
    for layers, agree_db in (([0], 55), (every, 45)):
        for ours, theirs in zip(switched(layers), real(layers)):
            assert sqnr_db(ours, theirs) > agree_db
    assert runner.sqnr(every) < runner.sqnr([0]) < 70  # it quantizes, and more layers cost more


class AdditiveNoise:
    """A stand-in runner whose SQNR is the sum of per-layer noise powers (the bisection's model)."""

    def __init__(self, sqnr_db):
        self.noise = 10 ** (-np.asarray(sqnr_db) / 10)
        self.calls = 0

    def sqnr(self, layers):
        self.calls += 1
        total = self.noise[list(layers)].sum()
        return float("inf") if total == 0 else float(-10 * np.log10(total))


def test_choose_layers_bisects_to_the_longest_prefix():
    values = [40.0, 10.0, 35.0, 45.0, 30.0, 50.0, 33.0, 38.0]
    table = [S.Sensitivity(f"n{i}", "MatMul", v) for i, v in enumerate(values)]
    runner = AdditiveNoise(values)
    chosen, measured = S.choose_layers(runner, table, 28.0, margin_db=1.0)
    assert 10.0 not in [values[i] for i in chosen] and measured >= 29.0
    # least harmful first
    assert sorted((values[i] for i in chosen), reverse=True) == sorted(values, reverse=True)[: len(chosen)]
    longer = sorted(range(8), key=lambda i: -values[i])[: len(chosen) + 1]
    assert runner.sqnr(longer) < 29.0  # one more layer would miss
    assert runner.calls <= 2 + int(np.ceil(np.log2(len(values)))) + 1
    assert S.choose_layers(AdditiveNoise([10.0, 12.0]), table[:2], 30.0)[0] == []


def test_with_times_the_search_quantizes_the_most_time_per_noise_first():
    # layer 0: harmless but cheap; layer 1: a little more harmful and ten times slower; layer 2: harmful
    sqnr, ms = [40.0, 37.0, 25.0], [1.0, 10.0, 5.0]
    harm_only = [S.Sensitivity(f"n{i}", "MatMul", v) for i, v in enumerate(sqnr)]
    timed = [S.Sensitivity(f"n{i}", "MatMul", v, fp32_ms=t) for i, (v, t) in enumerate(zip(sqnr, ms))]
    assert S.search_order(harm_only) == [0, 1, 2]
    assert S.search_order(timed) == [1, 0, 2]  # 10 ms / 10^-3.7 beats 1 ms / 10^-4
    # a budget that fits one of the two: by harm the cheap layer goes in, by time per noise the slow one
    assert S.choose_layers(AdditiveNoise(sqnr), harm_only, 36.0, margin_db=0.0)[0] == [0]
    chosen, measured = S.choose_layers(AdditiveNoise(sqnr), timed, 36.0, margin_db=0.0)
    assert chosen == [1] and measured == pytest.approx(37.0)
    partial = [S.Sensitivity("b", "MatMul", 37.0, fp32_ms=10.0), S.Sensitivity("a", "MatMul", 40.0)]
    assert S.order_kind(partial) == S.HARM_ORDER and S.search_order(partial) == [1, 0]  # a time missing: by harm
    assert S.order_kind(timed) == S.TIME_ORDER


def test_layer_search_keeps_the_harmful_layers_in_float(folder, calibrated):
    base = dict(precision="int8", calib_method="max", calib_limit=2, heldout=1, int8_exclude=SMALL, min_sqnr_db=32.0,
                min_mask_iou=0.5)
    # all eight GEMMs quantized: about 29 dB, short of 32
    with pytest.raises(ParityError, match="--layer-search"):
        make_precision_graphs(PrecisionSpec(str(folder), **base))
    artifact = make_precision_graphs(PrecisionSpec(str(folder), layer_search=True, **base))
    calibration = artifact.calibration
    search = calibration.layer_search
    assert 0 < calibration.quantized_layers < calibration.candidate_layers == 8
    assert len(search.kept_float) == 8 - calibration.quantized_layers
    assert "short by" in search.first_miss and search.goal_sqnr_db >= 33.0
    # the real graph's check, on a held-out image
    assert min(e["sqnr_db"] for e in artifact.parity["encoder"].values()) >= 32.0
    manifest = json.loads((Path(folder) / "manifest.json").read_text())
    recorded = [a for a in manifest["artifacts"] if a["precision"] == "int8"][0]
    assert recorded["calibration"]["layer_search"]["kept_float"] == [list(k) for k in search.kept_float]
    # each layer's fp32 time came from a real profile: the quantized share is part of the whole
    assert search.order == S.TIME_ORDER
    assert 0 < search.quantized_fp32_ms < search.candidate_fp32_ms
    assert all(ms is not None and ms > 0 for _, _, ms in search.kept_float)
