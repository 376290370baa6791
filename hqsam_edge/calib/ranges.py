"""Activation ranges of an fp32 graph, collected image by image (streaming).

Only the tensors that the INT8 recipe quantizes are read: the activation
input and output of every Conv / Gemm / MatMul with a constant weight. They
are added as extra outputs of a copy of the graph, one image runs at a time,
and each tensor is folded into running statistics at once, so memory stays
that of one inference (ONNX Runtime's own calibrator keeps every intermediate
tensor of every image, which exhausts 24 GiB on ViT-B at 1024x1024).

Methods: ``max`` (min/max), ``percentile`` (99.99th percentile of |x| from a
histogram), ``entropy`` (TensorRT's KL-divergence threshold). The last two
need a second pass (histograms over the range found by the first).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import progress
from ..atomic import write_text
from ..errors import UsageError
from ..export.onnx_files import save_onnx
from ..inputs import RANGE_METHODS as METHODS, require_choice

QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")
BINS = 2048


@dataclass(frozen=True)
class QuantTarget:
    """One node to quantize: its name, activation input, weight initializer and output."""

    node: str
    op_type: str
    activation: str
    weight: str
    output: str


def quantizable_nodes(model, exclude: Sequence[str] = ()) -> list[QuantTarget]:
    """Conv/Gemm/MatMul nodes whose second input is a constant weight, minus those whose
    name contains any of ``exclude`` (module paths such as ``patch_embed``)."""
    initializers = {i.name for i in model.graph.initializer}
    targets = []
    for node in model.graph.node:
        if node.op_type not in QUANTIZED_OPS or len(node.input) < 2:
            continue
        if node.input[1] not in initializers or node.input[0] in initializers:
            continue
        if any(pattern in node.name for pattern in exclude):
            continue
        targets.append(QuantTarget(node.name, node.op_type, node.input[0], node.input[1], node.output[0]))
    return targets


def _augmented_session(model_path: Path, tensors: list[str], workdir: Path):
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(model_path))
    existing = {o.name for o in model.graph.output}
    for name in tensors:
        if name not in existing:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    path = save_onnx(model, workdir / "augmented.onnx")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every named tensor
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _kl_threshold(hist: np.ndarray, edges: np.ndarray, num_quantized_bins: int = 128) -> float:
    """TensorRT's entropy calibration: the |x| threshold whose 128-level quantization
    keeps the histogram closest (KL divergence) to the original."""
    hist = hist.astype(np.float64)
    best_t, best_kl = edges[-1], np.inf
    for i in range(num_quantized_bins, len(hist) + 1, 16):
        ref = hist[:i].copy()
        ref[i - 1] += hist[i:].sum()  # clip the outliers into the last bin
        if ref.sum() == 0:
            continue
        chunks = np.array_split(np.arange(i), num_quantized_bins)
        cand = np.zeros(i)
        for idx in chunks:
            nz = hist[idx] > 0
            if nz.any():
                cand[idx[nz]] = hist[idx].sum() / nz.sum()
        p = ref / ref.sum()
        q = cand / max(cand.sum(), 1e-12)
        mask = p > 0
        kl = np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-12)))
        if kl < best_kl:
            best_kl, best_t = kl, edges[i]
    return float(best_t)


def collect_ranges(model_path: str | Path, tensors: Sequence[str], feeds: Iterable[dict[str, np.ndarray]],
                   method: str = "max", percentile: float = 99.99) -> dict[str, tuple[float, float]]:
    """``{tensor: (low, high)}`` over all feeds; symmetric ``(-t, t)`` for percentile/entropy."""
    require_choice(method, METHODS, "calibration method")
    tensors = list(dict.fromkeys(tensors))
    feeds = list(feeds) if method != "max" else feeds  # two passes need the data twice
    total = len(feeds) if hasattr(feeds, "__len__") else None
    low = {t: np.inf for t in tensors}
    high = {t: -np.inf for t in tensors}
    with tempfile.TemporaryDirectory(prefix="hqsam-calib-") as tmp:
        session = _augmented_session(Path(model_path), tensors, Path(tmp))
        count = 0
        with progress.stage("calibration images", total=total, unit="image") as step:
            for feed in feeds:
                for name, value in zip(tensors, session.run(tensors, feed)):
                    low[name] = min(low[name], float(value.min()))
                    high[name] = max(high[name], float(value.max()))
                count += 1
                step.advance()
        if count == 0:
            raise UsageError("no calibration images")
        if method == "max":
            return {t: (low[t], high[t]) for t in tensors}
        amax = {t: max(abs(low[t]), abs(high[t]), 1e-8) for t in tensors}
        hists = {t: np.zeros(BINS, np.int64) for t in tensors}
        for feed in feeds:
            for name, value in zip(tensors, session.run(tensors, feed)):
                hists[name] += np.histogram(np.abs(value), bins=BINS, range=(0.0, amax[name]))[0]
    ranges = {}
    for t in tensors:
        edges = np.linspace(0.0, amax[t], BINS + 1)
        if method == "percentile":
            cdf = np.cumsum(hists[t]) / max(hists[t].sum(), 1)
            threshold = float(edges[min(BINS, int(np.searchsorted(cdf, percentile / 100.0)) + 1)])
        else:
            threshold = _kl_threshold(hists[t], edges)
        ranges[t] = (-threshold, threshold)
    return ranges


def save_ranges(path: str | Path, ranges: dict[str, tuple[float, float]], **meta) -> None:
    write_text(path, json.dumps({"meta": meta, "ranges": ranges}, indent=1))


def load_ranges(path: str | Path, **meta) -> dict[str, tuple[float, float]] | None:
    """The cached ranges if ``path`` exists and was made with the same ``meta``; else None."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if data.get("meta") != json.loads(json.dumps(meta)):
        return None
    return {k: (float(v[0]), float(v[1])) for k, v in data["ranges"].items()}
