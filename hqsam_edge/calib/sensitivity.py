"""Which layers INT8 can take: each layer's sensitivity, measured end to end, and the largest set that keeps the bound.

Quantization noise compounds through the encoder, and a few layers amplify it
far more than the rest. On Light HQ-SAM (random weights, embedding SQNR with
one GEMM quantized at a time) single layers range from 7 dB to 46 dB, while
each layer's own output error is the same ~38 dB everywhere: the local error
does not predict the damage, only an end-to-end measurement does (see
benchmarks/RESULTS.md).

So the measurement runs on one "switch graph": the fp32 encoder in which every
candidate layer's activation input goes through QuantizeLinear /
DequantizeLinear with its calibrated scale and its weight is replaced by the
per-channel int8 round trip (the arithmetic of the Q/DQ graph), each blended
in by its own entry of an extra input ``quant_switch`` [L] (0: float, 1:
int8). One ONNX Runtime session then serves every measurement: a layer alone,
or any set of layers, without quantizing and loading a graph each time.

``choose_layers`` orders the layers and finds, by bisection, the longest
prefix whose encoder outputs stay above the SQNR bound (plus a margin); the
caller builds and checks the real Q/DQ graph for it. The order is by time
saved per unit of noise when each layer's fp32 time is known (``LayerSearch``
profiles the fp32 graph once, ``calib.costs``): quantization noise powers add
up across layers, so this is the knapsack's greedy order, and it quantizes a
slow, mildly harmful MLP layer before a fast, harmless projection (the times
are ONNX Runtime's on this CPU: for a TensorRT build, a proxy). Without times
it is least harmful first.

Fidelity (tests/calib/test_sensitivity.py): one layer switched on computes
what the Q/DQ graph with that layer computes (>55 dB apart); every layer of
the ONNX Runtime layout, too (>50 dB). For the TensorRT layout, sets of layers
read a few dB more optimistic than the Q/DQ graph, where ONNX Runtime's
quantizer also routes a residual addition through a shared Q/DQ pair; the
ranking still holds, and the real graph's check decides.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .. import progress
from ..export.onnx_files import save_onnx
from .costs import layer_ms, profile_graph
from .ranges import QuantTarget

SWITCH = "quant_switch"


@dataclass(frozen=True)
class Sensitivity:
    """Encoder-output SQNR (dB, worst output, worst image) with only ``node`` quantized."""

    node: str
    op_type: str
    sqnr_db: float
    fp32_ms: float | None = None  # the layer's kernel time in the fp32 graph (ONNX Runtime profile)

    @property
    def noise(self) -> float:
        """Noise power relative to the signal: these add up (roughly) when layers are quantized together."""
        return 10 ** (-self.sqnr_db / 10)


def _activation_qparams(lo: float, hi: float, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Scale and zero point as ONNX Runtime's quantizer derives them (range widened to hold 0)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if symmetric:
        amax = max(abs(lo), abs(hi), 1e-12)
        return np.array(amax / 127.0, np.float32), np.array(0, np.int8)
    scale = max(hi - lo, 1e-12) / 255.0
    return np.array(scale, np.float32), np.array(np.clip(round(-lo / scale), 0, 255), np.uint8)


def _weight_round_trip(weight: np.ndarray, axis: int, qmax: int) -> np.ndarray:
    """Symmetric per-channel int8 quantize + dequantize along ``axis`` (the output channels), levels -qmax..qmax."""
    other = tuple(i for i in range(weight.ndim) if i != axis)
    scale = np.abs(weight).max(axis=other, keepdims=True) / qmax
    scale[scale == 0] = 1.0
    return (np.clip(np.round(weight / scale), -qmax, qmax) * scale).astype(weight.dtype)


def _output_channel_axis(node, weight: np.ndarray) -> int:
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return weight.ndim - 1  # MatMul: [..., K, N]


def switch_graph(fp32_path: str | Path, out_path: str | Path, ranges: dict[str, tuple[float, float]],
                 targets: Sequence[QuantTarget], symmetric: bool, weight_qmax: int = 127,
                 dynamic: bool = False) -> Path:
    """Write the fp32 graph with every target's int8 round trip switched by ``quant_switch[i]``.

    ``symmetric``: int8 activations with zero point 0 (TensorRT), else uint8
    with a zero point; ``weight_qmax``: 127, or 64 for 7-bit weights; ``dynamic``: uint8 activations ranged
    per call (``DynamicQuantizeLinear``, as ``recipes.int8_dynamic_graph`` runs them; ``ranges`` unused)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(fp32_path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    by_name = {n.name: n for n in graph.node}
    graph.input.append(helper.make_tensor_value_info(SWITCH, onnx.TensorProto.FLOAT, [len(targets)]))
    before: dict[str, list] = {}  # target node -> the nodes that feed it its switched inputs
    new_inits = []
    for i, t in enumerate(targets):
        node, p = by_name[t.node], f"{SWITCH}/{i}"
        weight = numpy_helper.to_array(inits[t.weight])
        delta = _weight_round_trip(weight, _output_channel_axis(node, weight), weight_qmax) - weight
        new_inits += [numpy_helper.from_array(np.array(i, np.int64), f"{p}/index"),
                      numpy_helper.from_array(delta, f"{p}/weight_delta")]
        if dynamic:
            quantize = helper.make_node("DynamicQuantizeLinear", [t.activation],
                                        [f"{p}/q", f"{p}/scale", f"{p}/zero"], name=f"{p}/q")
        else:
            scale, zero = _activation_qparams(*ranges[t.activation], symmetric)
            new_inits += [numpy_helper.from_array(scale, f"{p}/scale"), numpy_helper.from_array(zero, f"{p}/zero")]
            quantize = helper.make_node("QuantizeLinear", [t.activation, f"{p}/scale", f"{p}/zero"], [f"{p}/q"],
                                        name=f"{p}/q")
        before[t.node] = [
            helper.make_node("Gather", [SWITCH, f"{p}/index"], [f"{p}/on"], name=f"{p}/gather"),
            # activation: x + on * (dq(q(x)) - x)
            quantize,
            helper.make_node("DequantizeLinear", [f"{p}/q", f"{p}/scale", f"{p}/zero"], [f"{p}/dq"], name=f"{p}/dq"),
            helper.make_node("Sub", [f"{p}/dq", t.activation], [f"{p}/x_err"], name=f"{p}/x_sub"),
            helper.make_node("Mul", [f"{p}/x_err", f"{p}/on"], [f"{p}/x_err_on"], name=f"{p}/x_mul"),
            helper.make_node("Add", [t.activation, f"{p}/x_err_on"], [f"{p}/x"], name=f"{p}/x_add"),
            # weight: w + on * (round_trip(w) - w)
            helper.make_node("Mul", [f"{p}/weight_delta", f"{p}/on"], [f"{p}/w_err_on"], name=f"{p}/w_mul"),
            helper.make_node("Add", [t.weight, f"{p}/w_err_on"], [f"{p}/w"], name=f"{p}/w_add"),
        ]
        node.input[0], node.input[1] = f"{p}/x", f"{p}/w"
    graph.initializer.extend(new_inits)
    # each layer's new nodes go right before it: they read the layer's own input (made earlier),
    # the switch input and initializers, so the graph stays in topological order
    nodes = []
    for n in graph.node:
        nodes += before.get(n.name, [])
        nodes.append(n)
    del graph.node[:]
    graph.node.extend(nodes)
    return save_onnx(model, out_path)


class SwitchRunner:
    """Run the switch graph for a set of quantized layers; SQNR of the encoder outputs against fp32."""

    def __init__(self, path: Path, count: int, feeds: Sequence[dict[str, np.ndarray]]) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.count = count
        self.feeds = list(feeds)
        self.reference = [self._run(f, np.zeros(count, np.float32)) for f in self.feeds]

    def _run(self, feed: dict[str, np.ndarray], switch: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {**feed, SWITCH: switch})

    def sqnr(self, layers: Sequence[int]) -> float:
        """Worst encoder-output SQNR (dB) over the feeds with ``layers`` quantized."""
        from ..runtime.compare import sqnr_db

        switch = np.zeros(self.count, np.float32)
        switch[list(layers)] = 1.0
        worst = float("inf")
        for feed, ref in zip(self.feeds, self.reference):
            for ours, theirs in zip(self._run(feed, switch), ref):
                worst = min(worst, sqnr_db(ours, theirs))
        return worst


def layer_sensitivity(runner: SwitchRunner, targets: Sequence[QuantTarget]) -> list[Sensitivity]:
    """Each layer quantized alone."""
    table = []
    with progress.stage("layer search: one layer at a time", total=len(targets), unit="layer") as step:
        for i, t in enumerate(targets):
            table.append(Sensitivity(t.node, t.op_type, runner.sqnr([i])))
            step.advance(detail=f"{t.node.removeprefix('/image_encoder/')}: {table[-1].sqnr_db:.1f} dB")
    return table


TIME_ORDER, HARM_ORDER = "fp32 time saved per unit of noise", "least harmful first"


def order_kind(sensitivity: Sequence[Sensitivity]) -> str:
    """By time per noise when every layer's fp32 time is known, else by harm alone."""
    return TIME_ORDER if sensitivity and all(s.fp32_ms is not None for s in sensitivity) else HARM_ORDER


def search_order(sensitivity: Sequence[Sensitivity]) -> list[int]:
    """Layer indices, the best to quantize first (``order_kind``); ties go to the less harmful layer."""
    if order_kind(sensitivity) == TIME_ORDER:
        return sorted(range(len(sensitivity)),
                      key=lambda i: (-(sensitivity[i].fp32_ms or 0.0) / max(sensitivity[i].noise, 1e-30),
                                     -sensitivity[i].sqnr_db))
    return sorted(range(len(sensitivity)), key=lambda i: -sensitivity[i].sqnr_db)


def choose_layers(runner: SwitchRunner, sensitivity: Sequence[Sensitivity], min_sqnr_db: float,
                  margin_db: float = 1.0) -> tuple[list[int], float]:
    """The longest prefix of ``search_order`` whose measured SQNR is >= ``min_sqnr_db + margin_db``.

    Returns (layer indices, their measured SQNR). Bisection: SQNR falls as
    layers are added, so about log2(L) measurements suffice.
    """
    order = search_order(sensitivity)
    goal = min_sqnr_db + margin_db
    lo, hi, best_sqnr = 0, len(order), float("inf")  # lo: known good prefix length
    full = runner.sqnr(order)
    if full >= goal:
        return order, full
    while hi - lo > 1:
        mid = (lo + hi) // 2
        value = runner.sqnr(order[:mid])
        if value >= goal:
            lo, best_sqnr = mid, value
        else:
            hi = mid
    return order[:lo], best_sqnr


class LayerSearch:
    """A switch graph over ``targets``, each layer's sensitivity measured once, then ``choose(goal)`` as often as
    needed (each a bisection of a few runs). ``close()`` removes the temporary graph."""

    def __init__(self, fp32_path: Path, ranges: dict[str, tuple[float, float]], targets: Sequence[QuantTarget],
                 feeds: Sequence[dict[str, np.ndarray]], *, symmetric: bool, weight_qmax: int,
                 dynamic: bool = False) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="hqsam-sensitivity-")
        path = switch_graph(fp32_path, Path(self._tmp.name) / "switch.onnx", ranges, targets, symmetric, weight_qmax,
                            dynamic=dynamic)
        self.targets = list(targets)
        self.runner = SwitchRunner(path, len(targets), feeds)
        times = layer_ms(profile_graph(fp32_path, feeds[0], runs=3), [(t.node, t.output) for t in targets])
        self.table = [replace(s, fp32_ms=times[s.node]) for s in layer_sensitivity(self.runner, targets)]
        self.order = order_kind(self.table)

    def ranked(self) -> list[Sensitivity]:
        """Most harmful first."""
        return sorted(self.table, key=lambda s: s.sqnr_db)

    def choose(self, min_sqnr_db: float) -> tuple[list[QuantTarget], float]:
        """The targets to quantize for encoder outputs >= ``min_sqnr_db`` (graph order), and the SQNR measured."""
        chosen, measured = choose_layers(self.runner, self.table, min_sqnr_db, margin_db=0.0)
        return [self.targets[i] for i in sorted(chosen)], measured

    def close(self) -> None:
        self._tmp.cleanup()
