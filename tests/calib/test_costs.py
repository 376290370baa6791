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
    layers = [(t.node, t.output) for t in targets]
    times = layer_ms(kernels, layers)
    # GEMMs keep their names; convolutions run as "<output>_nchwc" in ONNX Runtime's blocked layout
    assert all(ms is not None and ms > 0 for ms in times.values()), [n for n, ms in times.items() if not ms][:3]
    for name in kernels:  # no kernel is counted for two layers
        assert sum(1 for ms in layer_ms({name: kernels[name]}, layers).values() if ms is not None) <= 1
    total = sum(ms for _, ms in kernels.values())
    assert 0 < sum(times.values()) < total


def test_a_convolution_fused_with_its_activation_has_no_time(tmp_path):
    """ONNX Runtime names a Conv+Relu kernel after the Relu's output: the Conv's time is unknown (None), not 0,
    and a graph output tensor's blocked convolution is still found by its output name."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.RandomState(0).randn(8, 8, 3, 3).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c1"], name="/a/Conv", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c1"], ["r1"], name="/a/Relu"),
         helper.make_node("Conv", ["r1", "w"], ["y"], name="/b/Conv", pads=[1, 1, 1, 1])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 64, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 64, 64])], [w])
    path = tmp_path / "convs.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    kernels = profile_graph(path, {"x": np.ones((1, 8, 64, 64), np.float32)}, runs=1)
    times = layer_ms(kernels, [("/a/Conv", "c1"), ("/b/Conv", "y")])
    assert times["/a/Conv"] is None and times["/b/Conv"] > 0
