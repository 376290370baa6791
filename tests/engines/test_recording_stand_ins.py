"""The stand-ins themselves: they must behave as TensorRT's parser and pycuda do where our code depends on it, or
the tests run against them prove nothing (the names, types and context moves below are the vendors')."""

from __future__ import annotations

import threading

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.engines import recording_pycuda as RC
from tests.engines import recording_tensorrt as RT


def _graph(path):
    nodes = [
        helper.make_node("Constant", [], ["two"], name="const", value=numpy_helper.from_array(np.float32(2.0))),
        helper.make_node("Gemm", ["x", "w", "b"], ["g"], name="fc"),
        helper.make_node("Mul", ["g", "two"], ["m"], name="scale"),
        helper.make_node("Split", ["m"], ["s0", "s1"], name="halves", axis=1),
        helper.make_node("Shape", ["s0"], ["shape"], name="shape_of"),
        helper.make_node("Reshape", ["s1", "shape"], ["r"], name="reshape"),
        helper.make_node("Gemm", ["r", "w2"], ["y"], name="fc_0"),  # the name the first Gemm's bias layer took
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2]),
         helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
        [numpy_helper.from_array(np.ones((4, 4), np.float32), "w"),
         numpy_helper.from_array(np.ones(4, np.float32), "b"),
         numpy_helper.from_array(np.ones((2, 2), np.float32), "w2")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_parser_names_layers_as_tensorrts_does(tmp_path):
    network = RT.INetworkDefinition(0)
    assert RT.OnnxParser(network, RT.Logger()).parse_from_file(str(_graph(tmp_path / "g.onnx")))
    layers = [(layer.name, layer.type.name) for layer in network.layers]
    assert ("const", "CONSTANT") not in layers and all(name != "const" for name, _ in layers)  # no layer for Constant
    assert layers == [
        ("w", "CONSTANT"), ("b", "CONSTANT"), ("fc", "MATRIX_MULTIPLY"), ("fc_0", "ELEMENTWISE"),  # bias: counter 0
        ("two", "CONSTANT"), ("scale", "ELEMENTWISE"),
        ("halves", "SLICE"), ("halves_1", "SLICE"),  # the network-wide counter, not per node
        ("shape_of", "SHAPE"), ("reshape", "SHUFFLE"),
        ("w2", "CONSTANT"), ("fc_0_2", "MATRIX_MULTIPLY")]  # an ONNX node name is not its layer's name
    by_name = {layer.name: layer for layer in network.layers}
    assert by_name["shape_of"].get_output(0).dtype is RT.DataType.INT64
    assert by_name["shape_of"].get_output(0).is_shape_tensor and by_name["reshape"].get_input(1).is_shape_tensor
    assert not by_name["reshape"].get_input(0).is_shape_tensor and by_name["scale"].get_output(0).dtype is RT.float32


def test_pycuda_push_pops_the_current_pycuda_context_first():
    """pycuda's ``context_push`` pops the pycuda context current first and ``pop`` pushes back the one below: the
    driver's stack holds one pycuda context per thread."""
    RC.reset()
    device = RC.Device(0)
    ours, theirs = device.retain_primary_context(), RC.Context(device, primary=False)
    theirs.push()
    ours.push()
    assert RC.DRIVER.stack() == [ours] and RC.DRIVER.pycuda_stack() == [theirs, ours]
    RC.Context.pop()
    assert RC.DRIVER.stack() == [theirs] and RC.DRIVER.current() is theirs
    RC.Context.pop()
    assert RC.DRIVER.stack() == [] and RC.DRIVER.current() is None
    with pytest.raises(RC.LogicError):
        RC.Context.pop()


def test_contexts_count_their_own_memory_and_refuse_two_threads_at_once(monkeypatch, tmp_path):
    """TensorRT's default STATIC strategy gives each context memory of its own; USER_MANAGED none."""
    RT.install(monkeypatch)
    ctx = RC.Device(0).retain_primary_context()
    ctx.push()
    try:
        plan = {"onnx": str(_graph(tmp_path / "g.onnx")), "profile": {}, "version_compatible": False}
        engine = RT.ICudaEngine(plan, RT.Runtime(RT.Logger()))
        assert engine.get_tensor_dtype("shape") is RT.DataType.INT64
        before = RC.DRIVER.allocated()
        static = [engine.create_execution_context() for _ in range(3)]
        assert RC.DRIVER.allocated() - before == 3 * RT.ACTIVATION_BYTES
        managed = engine.create_execution_context(RT.ExecutionContextAllocationStrategy.USER_MANAGED)
        assert RC.DRIVER.allocated() - before == 3 * RT.ACTIVATION_BYTES and managed.own_memory is None
        del static
        assert RC.DRIVER.allocated() == before
        entered, release = threading.Event(), threading.Event()
        real = managed._execute

        def slow():
            entered.set()
            release.wait(5)
            return True

        monkeypatch.setattr(managed, "_execute", slow)
        worker = threading.Thread(target=managed.execute_async_v3, args=(0,))
        worker.start()
        entered.wait(5)
        assert managed.execute_async_v3(0) is False
        release.set()
        worker.join()
        assert RC.DRIVER.errors == ["an IExecutionContext ran on two threads at once"]
        del real
    finally:
        RC.Context.pop()
