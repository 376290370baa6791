"""calib.costs: each layer's time from a real ONNX Runtime profile of the fp32 encoder."""

from __future__ import annotations

import onnx

from hqsam_edge.calib.costs import layer_ms, profile_graph
from hqsam_edge.calib.images import CalibrationSet
from hqsam_edge.calib.ranges import quantizable_nodes


def test_every_quantizable_layer_finds_its_kernels_once(tiny_folder):
    encoder = tiny_folder / "encoder.onnx"
    targets = quantizable_nodes(onnx.load(str(encoder), load_external_data=False))
    assert {t.op_type for t in targets} == {"Conv", "MatMul"}
    kernels = profile_graph(encoder, next(iter(CalibrationSet(None, limit=1))), runs=1)
    times = layer_ms(kernels, [t.node for t in targets])
    # GEMMs keep their names; convolutions run as ".../Conv_output_0_nchwc" in ONNX Runtime's blocked layout
    assert all(ms > 0 for ms in times.values()), [n for n, ms in times.items() if ms == 0][:3]
    for name in kernels:  # no kernel is counted for two layers
        assert sum(1 for t in targets if layer_ms({name: kernels[name]}, [t.node])[t.node] > 0) <= 1
    total = sum(ms for _, ms in kernels.values())
    assert 0 < sum(times.values()) < total
