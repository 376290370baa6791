"""What the FP16 graph's FP32 islands are for, shown on the CPU with a stress checkpoint (``model.stress``).

``fp16_stress(encoder.onnx, workdir)`` runs a stress checkpoint's fp32
encoder graph under ONNX Runtime on the CPU: as exported (the reference), and
the FP16 graph as built (``recipes.fp16_graph``: norms, softmax and
reductions kept FP32). ONNX Runtime's CPU provider is no FP16 emulator: it
runs chains of FP16 nodes in FP32 between casts, and its FP16
``LayerNormalization`` accumulates in FP32, so it hides the overflow a GPU's
FP16 layers meet. Two more runs therefore store every float tensor in FP16
explicitly (an FP16 round trip after each node, ``fp16_storage``; weights
rounded to FP16), as a GPU's FP16 kernels do between layers: with the FP32
islands (their outputs kept FP32), and without them, the normalisations
spelled out in the operations they compute (mean, square, mean, add, square
root, divide), each stored in FP16: the square of a stress checkpoint's
activations exceeds FP16's 65504, and the embedding comes out non-finite or
far off, while the graph with its islands stays within its bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .recipes import fp16_graph


@dataclass(frozen=True)
class StressFigures:
    """One FP16 graph's encoder outputs against the fp32 graph's on the stress checkpoint."""

    finite: bool
    sqnr_db: dict[str, float]  # per encoder output; -inf where not finite

    @property
    def worst_db(self) -> float:
        return min(self.sqnr_db.values())


def decompose_layer_norms(model) -> int:  # noqa: ANN001 - an onnx.ModelProto
    """Rewrite every ``LayerNormalization`` of ``model`` as the operations it computes (opset 17 spelling); the
    count rewritten."""
    import onnx
    from onnx import helper, numpy_helper

    nodes, count = [], 0
    for node in model.graph.node:
        if node.op_type != "LayerNormalization":
            nodes.append(node)
            continue
        count += 1
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        axis, eps = int(attrs.get("axis", -1)), float(attrs.get("epsilon", 1e-5))
        x, scale = node.input[0], node.input[1]
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        p = f"{node.name or node.output[0]}__ln"
        model.graph.initializer.extend([numpy_helper.from_array(np.float32(2.0), f"{p}_two"),
                                        numpy_helper.from_array(np.float32(eps), f"{p}_eps")])
        out = node.output[0]
        nodes += [
            helper.make_node("ReduceMean", [x], [f"{p}_mean"], axes=[axis], keepdims=1, name=f"{p}_mean"),
            helper.make_node("Sub", [x, f"{p}_mean"], [f"{p}_d"], name=f"{p}_sub"),
            helper.make_node("Pow", [f"{p}_d", f"{p}_two"], [f"{p}_sq"], name=f"{p}_pow"),
            helper.make_node("ReduceMean", [f"{p}_sq"], [f"{p}_var"], axes=[axis], keepdims=1, name=f"{p}_var"),
            helper.make_node("Add", [f"{p}_var", f"{p}_eps"], [f"{p}_vareps"], name=f"{p}_addeps"),
            helper.make_node("Sqrt", [f"{p}_vareps"], [f"{p}_std"], name=f"{p}_sqrt"),
            helper.make_node("Div", [f"{p}_d", f"{p}_std"], [f"{p}_n"], name=f"{p}_div"),
            helper.make_node("Mul", [f"{p}_n", scale], [f"{p}_s" if bias else out], name=f"{p}_scale"),
        ]
        if bias:
            nodes.append(helper.make_node("Add", [f"{p}_s", bias], [out], name=f"{p}_bias"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return count


def fp16_storage(model, keep_ops=()) -> None:  # noqa: ANN001 - an onnx.ModelProto
    """Store every float tensor of ``model`` in FP16 (a Cast to FLOAT16 and back after each node, the weights
    rounded), except the outputs of ``keep_ops`` and the weights only they read."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.input, *graph.output]}
    readers: dict[str, set[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, set()).add(node.op_type)
    for k, init in enumerate(model.graph.initializer):
        if init.data_type == TensorProto.FLOAT and readers.get(init.name, set()) - set(keep_ops):
            value = numpy_helper.to_array(init).astype(np.float16).astype(np.float32)
            model.graph.initializer[k].CopyFrom(numpy_helper.from_array(value, init.name))
    nodes = []
    for node in model.graph.node:
        nodes.append(node)
        if node.op_type in keep_ops:
            continue
        for k, out in enumerate(node.output):
            if types.get(out) != TensorProto.FLOAT:
                continue
            node.output[k] = f"{out}__fp32"
            nodes += [helper.make_node("Cast", [f"{out}__fp32"], [f"{out}__fp16"], to=TensorProto.FLOAT16,
                                       name=f"{out}__store"),
                      helper.make_node("Cast", [f"{out}__fp16"], [out], to=TensorProto.FLOAT, name=f"{out}__load")]
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def _run(path: Path, image: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {session.get_inputs()[0].name: image})))


def _figures(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> StressFigures:
    sqnr, finite = {}, True
    for name, ref in reference.items():
        value = candidate[name].astype(np.float64)
        ok = bool(np.isfinite(value).all())
        finite &= ok
        error = float(np.sum((value - ref) ** 2)) if ok else float("inf")
        signal = float(np.sum(ref.astype(np.float64) ** 2))
        sqnr[name] = float("-inf") if not ok else 10 * np.log10(signal / max(error, 1e-30))
    return StressFigures(finite, sqnr)


@dataclass(frozen=True)
class StressResult:
    """The FP16 graph as built (ONNX Runtime), and FP16 storage emulated with and without the FP32 islands."""

    built: StressFigures
    islands: StressFigures
    no_islands: StressFigures


def fp16_stress(encoder: str | Path, workdir: str | Path, image: np.ndarray | None = None) -> StressResult:
    """The FP16 runs of the module docstring against the fp32 ``encoder`` graph on ``image`` (default: a seeded
    random one), on the CPU; the graphs are written into ``workdir``."""
    import onnx

    from .recipes import FP16_KEEP_FP32

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if image is None:
        image = np.random.default_rng(0).standard_normal((1, 3, 1024, 1024)).astype(np.float32)
    built = fp16_graph(encoder, workdir / "encoder.fp16.onnx")
    islands = onnx.load(str(encoder))
    fp16_storage(islands, FP16_KEEP_FP32)
    onnx.save(islands, str(workdir / "encoder.fp16-storage.islands.onnx"))
    bare = onnx.load(str(encoder))
    decompose_layer_norms(bare)
    fp16_storage(bare)
    onnx.save(bare, str(workdir / "encoder.fp16-storage.no-islands.onnx"))
    reference = _run(Path(encoder), image)
    return StressResult(*(_figures(reference, _run(path, image)) for path in (
        built, workdir / "encoder.fp16-storage.islands.onnx", workdir / "encoder.fp16-storage.no-islands.onnx")))
