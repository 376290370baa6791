"""What each layer of a graph costs under ONNX Runtime, from its profiler.

The layer search (``calib.sensitivity``) weighs what quantizing a layer
saves against the noise it adds, and ``benchmarks/int8_ceiling.py`` splits
an INT8 graph's time into its integer layers and the rest; both read kernel
times from one profile here. ONNX Runtime's fused nodes keep the name of the
node they start from (``.../attn/MatMul/MatMulScaleFusion/``), and a
convolution in the blocked layout runs as a kernel named after its output
tensor (``<output>_nchwc``), so a layer's time is that of the kernels named
after its node or its output. A convolution fused with the activation after
it is named after the activation's output and is not found: its time is
``None``, and callers fall back to what does not need it.
"""

from __future__ import annotations

import collections
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..timing import time_calls


def kernel_times(profile: str | Path) -> dict[str, tuple[str, float]]:
    """Node name -> (op type, mean kernel ms per run) from an ONNX Runtime profile file; the first run
    (warm-up: allocations, weight packing) is left out when there are others."""
    events = json.loads(Path(profile).read_text())
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                  if e.get("cat") == "Session" and e["name"] == "model_run")
    timed = runs[1:] or runs
    total: dict[str, float] = collections.Counter()
    ops: dict[str, str] = {}
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        if any(start <= event["ts"] <= end for start, end in timed):
            name = event["name"].removesuffix("_kernel_time")
            total[name] += event["dur"] / 1e3
            ops[name] = event["args"]["op_name"]
    return {name: (ops[name], ms / max(1, len(timed))) for name, ms in total.items()}


def profiled_session(path: str | Path, profile_dir: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session (all graph optimisations, as the runtime uses) that profiles every run."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(str(profile_dir), Path(path).stem)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def profile_graph(path: str | Path, feed: dict[str, np.ndarray], runs: int = 1,
                  threads: int | None = None) -> dict[str, tuple[str, float]]:
    """Kernel times of ``path`` over ``runs`` (at least one) timed runs after one warm-up."""
    with tempfile.TemporaryDirectory(prefix="hqsam-profile-") as tmp:
        session = profiled_session(path, tmp, threads)
        time_calls(lambda: session.run(None, feed), runs, warmup=1)
        return kernel_times(session.end_profiling())


def layer_ms(kernels: dict[str, tuple[str, float]], layers: Iterable[tuple[str, str]]) -> dict[str, float | None]:
    """Each layer's time, for (node name, output tensor) pairs: the kernels named after the node (and the
    fused kernels that start from it) or after its output in the blocked layout; ``None`` when none is."""
    out: dict[str, float | None] = {}
    for node, output in layers:
        found = [ms for name, (_, ms) in kernels.items()
                 if name == node or name.startswith(node + "/") or name == output + "_nchwc"]
        out[node] = sum(found) if found else None
    return out
