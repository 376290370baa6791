"""Precision recipes: fp32 ONNX graph -> FP16 graph, or INT8 graph with Q/DQ nodes.

Precision lives in the graph (TensorRT 11 builds strongly typed networks;
ONNX Runtime runs the same graphs on the CPU). Graph inputs and outputs stay
float32 in every variant, so runtimes feed and fetch the same arrays.

* FP16: every float tensor and weight in half precision except the operations
  that overflow or lose accuracy in it (``FP16_KEEP_FP32``): normalisations,
  softmax, and the reductions / exponentials around them.
* INT8: symmetric per-channel int8 weights and int8 activations on the inputs
  of Conv / Gemm / MatMul layers with constant weights, from calibrated
  ranges, on the layers' inputs only (outputs stay float). ``graph_backend="tensorrt"``
  makes activations symmetric int8 (zero point 0, what TensorRT requires) on
  every such layer; ``graph_backend="onnxruntime"`` makes them asymmetric uint8 (U8S8,
  what ONNX Runtime's x86 kernels run fastest) on the GEMMs only
  (``BACKEND_OPS``), with 7-bit weights (``reduce_range``): ONNX Runtime's x86
  U8S8 kernels multiply with VPMADDUBSW, whose int16 pair sums saturate
  (255 x 127 x 2 > 32767); measured on this project's CPU, one attention
  projection of Light HQ-SAM quantized alone cost the image embedding 7.7 dB
  SQNR with 8-bit weights and 35.6 dB with 7-bit ones, at the same speed.
  Sensitive layers (the patch embedding and the neck by default) stay in
  float; ``calib.sensitivity`` finds more when a bound is missed.
* INT8 with dynamic activations (``int8_dynamic_graph``, the default for ONNX
  Runtime): the same GEMMs with per-channel int8 weights, their uint8
  activations ranged per call (``DynamicQuantizeLinear``, fused by ONNX
  Runtime into one quantize-and-multiply kernel), so no calibration images.
  Measured here (``benchmarks/cpu_speed.py --int8``): every GEMM in int8
  ran the encoder 1.40x (Light HQ-SAM) and 1.71x (ViT-B) faster than fp32,
  and cleaner than with calibrated ranges (every GEMM: 24.5 dB vs 20.8 dB for
  Light HQ-SAM, 36.1 dB vs 32.5 dB for ViT-B): each call's range is its own.
  The MatMuls only (``DYNAMIC_OPS``). Weights are 8-bit where ONNX Runtime's
  uint8 x int8 kernels do not saturate (``hardware.u8s8_saturates``), else
  7-bit; the runtime warns when an 8-bit graph opens on a CPU that saturates.
  TensorRT needs static scales: its graphs are always calibrated.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..inputs import DYNAMIC_RANGES, require_choice
from ..export.onnx_files import needs_external_data, save_onnx
from .ranges import QUANTIZED_OPS, QuantTarget

FP16_KEEP_FP32 = (
    "LayerNormalization", "Softmax", "ReduceMean", "ReduceSum", "Pow", "Sqrt", "Reciprocal", "Exp",
    "Sin", "Cos", "Range", "Resize",
)
GRAPH_BACKENDS = ("tensorrt", "onnxruntime")
# Which layers each backend quantizes. TensorRT fuses Q/DQ into every Conv / Gemm / MatMul.
# ONNX Runtime on x86 gains only on the GEMMs (QGemm ran the TinyViT encoder's Gemms 1.8x
# faster); its int8 convolutions need quantized outputs, whose DequantizeLinear over the
# 256x256 stage-0 maps cost more than they save (measured: 0.87x the fp32 encoder), so
# convolutions stay float there. See benchmarks/RESULTS.md.
BACKEND_OPS = {"tensorrt": ("Conv", "Gemm", "MatMul"), "onnxruntime": ("Gemm", "MatMul")}
# ONNX Runtime's dynamic quantizer has no integer Gemm: it rewrites a Gemm as a MatMul of another name, which
# ``nodes_to_quantize`` then misses. Our encoders' GEMMs are all MatMul; a Gemm stays float.
DYNAMIC_OPS = ("MatMul",)
DEFAULT_INT8_EXCLUDE = ("patch_embed", "neck")
DEFAULT_CALIB_METHOD = {"onnxruntime": DYNAMIC_RANGES, "tensorrt": "max"}
WEIGHT_QMAX = {8: 127, 7: 64}  # largest int8 weight level by the weights' bits (7: ONNX Runtime's ``reduce_range``)


def calib_method(graph_backend: str, method: str | None = None) -> str:
    """The calibration method of an INT8 graph for ``graph_backend``: ``method``, or the backend's default
    (``DEFAULT_CALIB_METHOD``); ``dynamic`` is refused for TensorRT, whose Q/DQ scales must be constants."""
    from ..inputs import CALIB_METHODS

    require_choice(graph_backend, GRAPH_BACKENDS, "INT8 graph backend")
    if method is None:
        return DEFAULT_CALIB_METHOD[graph_backend]
    require_choice(method, CALIB_METHODS, "calibration method")
    if method == DYNAMIC_RANGES and graph_backend == "tensorrt":
        raise UsageError("--calib-method dynamic is for ONNX Runtime graphs: TensorRT needs constant Q/DQ scales; "
                         "use --calib-method max, percentile or entropy")
    return method


def dynamic_weight_bits() -> int:
    """8-bit weights where ONNX Runtime's uint8 x int8 GEMMs accumulate without saturating, else 7-bit."""
    from ..hardware import u8s8_saturates

    return 7 if u8s8_saturates() else 8


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ONNX Runtime's quantizer logs advice through the root logger: errors only while it runs."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def static_weight_bits(graph_backend: str) -> int:
    """The weights' bits of a calibrated (Q/DQ) graph: 8 for TensorRT, 7 for ONNX Runtime (see the module docstring)."""
    return 8 if graph_backend == "tensorrt" else 7


def weight_qmax(graph_backend: str) -> int:
    """Largest int8 weight level of a backend's calibrated graph: 127, or 64 for ONNX Runtime's 7-bit weights."""
    return WEIGHT_QMAX[static_weight_bits(graph_backend)]


def _unshare_initializers(model, keep_fp32: set[str]) -> None:
    """Give kept-fp32 nodes their own copy of any initializer they share with converted nodes.

    Graph clean-up deduplicates equal tensors (e.g. zero biases), so one
    initializer may feed a LayerNormalization and a Conv; the converter then
    leaves it fp32 and the Conv gets mixed input types.
    """
    import onnx

    inits = {i.name: i for i in model.graph.initializer}
    users: dict[str, set[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            users.setdefault(name, set()).add(node.op_type)
    for node in model.graph.node:
        if node.op_type not in keep_fp32:
            continue
        for k, name in enumerate(node.input):
            if name in inits and users[name] - keep_fp32:
                copy = onnx.TensorProto()
                copy.CopyFrom(inits[name])
                copy.name = f"{name}__fp32_{k}_{node.name}"
                model.graph.initializer.append(copy)
                node.input[k] = copy.name


def _separate_outputs(model) -> None:
    """A graph output that other nodes also read gets an internal name plus an Identity to the output.

    Otherwise the converter keeps the output float32 (``keep_io_types``) and
    its internal readers get mixed input types (the encoder's
    ``image_embeddings`` feeds the HQ fusion).
    """
    import onnx

    outputs = {o.name for o in model.graph.output}
    read = {name for node in model.graph.node for name in node.input}
    for name in outputs & read:
        internal = f"{name}__internal"
        for node in model.graph.node:
            for k, value in enumerate(node.output):
                if value == name:
                    node.output[k] = internal
            for k, value in enumerate(node.input):
                if value == name:
                    node.input[k] = internal
        model.graph.node.append(onnx.helper.make_node("Identity", [internal], [name], name=f"{name}__output"))


def _fix_casts(model, keep_fp32: set[str]) -> None:
    """``Cast(to=float)`` nodes inside the graph (label masks in the decoder) now feed float16
    arithmetic: cast to float16 instead, unless a kept-fp32 node reads them."""
    import onnx

    readers: dict[str, list[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node.op_type)
    outputs = {o.name for o in model.graph.output}
    for node in model.graph.node:
        if node.op_type != "Cast" or node.output[0] in outputs:
            continue
        to = next(a for a in node.attribute if a.name == "to")
        ops = readers.get(node.output[0], [])
        if to.i == onnx.TensorProto.FLOAT and ops and not set(ops) & keep_fp32 and "Cast" not in ops:
            to.i = onnx.TensorProto.FLOAT16


def fp16_graph(fp32_path: str | Path, out_path: str | Path, keep_fp32: Sequence[str] = FP16_KEEP_FP32) -> Path:
    """Write the FP16 variant of ``fp32_path`` (float32 inputs/outputs kept)."""
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(fp32_path))
    del model.graph.value_info[:]  # stale float32 annotations would mislead the converter's type bookkeeping
    _unshare_initializers(model, set(keep_fp32))
    _separate_outputs(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=list(keep_fp32),
                                                disable_shape_infer=False)
    _fix_casts(half, set(keep_fp32))
    return save_onnx(half, out_path)


QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def dynamic_targets(model, exclude: Sequence[str] = ()) -> list[QuantTarget]:
    """The layers ``int8_dynamic_graph`` can quantize in ``model`` (an ONNX ModelProto, external data not needed):
    MatMuls with a constant 2-D weight, minus names containing ``exclude``. ONNX Runtime's per-channel integer
    MatMul takes 2-D weights only: the decoder's product of a feature map with a constant vector (1-D) failed at
    run time ("b zero point is not valid")."""
    from .ranges import quantizable_nodes

    ranks = {i.name: len(i.dims) for i in model.graph.initializer}
    return [t for t in quantizable_nodes(model, exclude) if t.op_type in DYNAMIC_OPS and ranks.get(t.weight) == 2]


def int8_dynamic_graph(fp32_path: str | Path, out_path: str | Path, targets: Sequence[QuantTarget],
                       weight_bits: int = 8) -> Path:
    """Write the INT8 variant of ``fp32_path`` with dynamic activations (ONNX Runtime only) for the GEMMs in
    ``targets``: per-channel symmetric int8 weights (``weight_bits`` 8, or 7 where uint8 x int8 saturates),
    uint8 activations ranged per call; everything else stays float. ``targets``: from ``dynamic_targets``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if not targets:
        raise UsageError("nothing to quantize: no MatMul layer with constant weights is left")
    with _quiet_root_logger(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(str(fp32_path), str(out_path), op_types_to_quantize=list(DYNAMIC_OPS),
                         nodes_to_quantize=[t.node for t in targets], per_channel=True,
                         reduce_range=weight_bits == 7, weight_type=QuantType.QInt8,
                         use_external_data_format=needs_external_data(fp32_path))
    return Path(out_path)


def int8_on_fp16_graph(qdq_path: str | Path, out_path: str | Path) -> Path:
    """The Q/DQ graph ``qdq_path`` (``int8_graph``, laid out for TensorRT) through the FP16 recipe: its
    non-quantized layers in FP16 with the same FP32 islands as the FP16 graph, the Q/DQ pairs in FP32 (their scales
    are float32 up to opset 18). For strongly typed TensorRT (11), which runs every layer in the type the graph
    gives it: from the fp32 Q/DQ graph, everything between the quantized layers would run FP32."""
    return fp16_graph(qdq_path, out_path, keep_fp32=(*FP16_KEEP_FP32, *QDQ_OPS))


def int8_graph(fp32_path: str | Path, out_path: str | Path, ranges: dict[str, tuple[float, float]],
               targets: Sequence[QuantTarget], graph_backend: str = "tensorrt",
               reduce_range: bool | None = None) -> Path:
    """Write the INT8 (Q/DQ) variant of ``fp32_path`` for the nodes in ``targets``.

    ``ranges`` must cover each target's activation input and output. Uses ONNX
    Runtime's QDQ quantizer with our pre-computed ranges (its calibration
    cache), so one calibration serves both backends. ``reduce_range``: 7-bit weights (default: the
    backend's choice, see the module docstring; ``benchmarks/int8_layers.py`` compares both).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

    require_choice(graph_backend, GRAPH_BACKENDS, "INT8 graph backend")
    targets = [t for t in targets if t.op_type in BACKEND_OPS[graph_backend]]
    if not targets:
        raise UsageError("nothing to quantize: no Conv/Gemm/MatMul layer with constant weights is left")
    needed = {t.activation for t in targets} | {t.output for t in targets}
    missing = sorted(needed - set(ranges))
    if missing:
        raise UsageError(f"calibration ranges miss {len(missing)} tensors (e.g. {missing[0]}); calibrate again")
    data = {name: (np.float32(lo), np.float32(hi)) for name, (lo, hi) in ranges.items() if name in needed}
    symmetric = graph_backend == "tensorrt"
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory(prefix="hqsam-int8-") as tmp:
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(TensorsData(CalibrationMethod.MinMax, data), cache)
        with _quiet_root_logger(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_static(
                str(fp32_path),
                str(out_path),
                calibration_data_reader=None,
                calibration_cache_path=cache,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=sorted({t.op_type for t in targets}),
                nodes_to_quantize=[t.node for t in targets],
                per_channel=True,
                # 7-bit weights for ONNX Runtime's U8S8 (saturation: see above) unless asked otherwise
                reduce_range=static_weight_bits(graph_backend) == 7 if reduce_range is None else reduce_range,
                activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                use_external_data_format=needs_external_data(fp32_path),
                extra_options={
                    "ActivationSymmetric": symmetric,
                    "WeightSymmetric": True,
                    "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
                    "DedicatedQDQPair": False,
                    # TensorRT 8.x refuses int8 initializers ("invalid weights type of Int8"): for it the weights
                    # stay float behind their own Q/DQ pair (the same values after the round trip)
                    "AddQDQPairToWeight": symmetric,
                    # TensorRT takes float biases (as NVIDIA's own quantization tools leave them); an
                    # int32 bias at scale s_x * s_w overflows where weights are tiny or zero
                    "QuantizeBias": not symmetric,
                    # Q/DQ on the layers' inputs only: ONNX Runtime then runs QGemm / integer
                    # convolutions with float outputs, and the float ops after them (GELU, norms)
                    # stay fused; TensorRT places int8 at layer inputs the same way.
                    "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS),
                },
            )
    return out_path
