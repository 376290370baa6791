"""Where INT8 saves time on this CPU, and the most it could save (ONNX Runtime profile, one process).

Profiles the fp32 encoder and the folder's INT8 encoder (from ``hqsam-edge
build --precision int8``) under ONNX Runtime, alternating runs, and splits
each graph's kernel time into the layers the recipe quantizes and everything
else. The INT8 graph can be no faster than fp32 time / (INT8 time - time of
its integer layers): that ceiling holds however fast the integer kernels get.

    python benchmarks/int8_ceiling.py build/hq_vit_tiny [--runs 5] [--threads 2]

Prints the split, the speed-up of the quantized layers themselves and the
ceiling; ``--json F`` also writes them. The speed-up is wall time (median);
the split and the ceiling are summed kernel times (mean of the timed runs).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

# kernels of the integer layers and their (de)quantization in an INT8 graph
INTEGER_KERNELS = ("MatMulIntegerToFloat", "QGemm", "QLinearMatMul", "QLinearConv", "ConvInteger",
                   "MatMulInteger", "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
                   "DynamicQuantizeMatMul")  # the last: ONNX Runtime's fusion of a dynamic graph's quantize + GEMM


def _quantized_layers(int8_model) -> list[tuple[str, str]]:
    """(fp32 node, output) of the layers an INT8 graph quantizes. A Q/DQ graph: those whose activation comes from a
    DequantizeLinear (they keep their fp32 names). A graph with activations ranged per call: each ``MatMulInteger``
    that ONNX Runtime's quantizer named ``<fp32 node>_quant``, whose scaling ``Mul`` (``<that>_output_scale_mul``)
    writes the fp32 output."""
    nodes = int8_model.graph.node
    dequantized = {n.output[0] for n in nodes if n.op_type == "DequantizeLinear"}
    layers = [(n.name, n.output[0]) for n in nodes
              if n.op_type in ("Conv", "Gemm", "MatMul") and n.input and n.input[0] in dequantized]
    scaled = {n.name: n.output[0] for n in nodes if n.op_type == "Mul"}
    for n in nodes:
        if n.op_type == "MatMulInteger" and f"{n.name}_output_scale_mul" in scaled:
            layers.append((n.name.removesuffix("_quant"), scaled[f"{n.name}_output_scale_mul"]))
    return layers


def main() -> None:
    from hqsam_edge.export.manifest import read_manifest
    from hqsam_edge.calib.costs import kernel_times, layer_ms, profiled_session
    from hqsam_edge.calib.images import CalibrationSet
    from hqsam_edge.hardware import this_platform
    from hqsam_edge.timing import time_interleaved

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="artifact folder with an onnxruntime int8 build")
    ap.add_argument("--runs", type=int, default=5, help="timed runs of each graph (after one warm-up)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()

    import onnx

    manifest = read_manifest(args.folder)
    fp32_path = args.folder / manifest.find("onnxruntime", "fp32").files["encoder"]
    int8_path = args.folder / manifest.find("onnxruntime", "int8").files["encoder"]
    quantized = _quantized_layers(onnx.load(str(int8_path), load_external_data=False))
    feed = next(iter(CalibrationSet(None, limit=1)))

    with tempfile.TemporaryDirectory(prefix="hqsam-ceiling-") as tmp:
        sessions = {"fp32": profiled_session(fp32_path, tmp, args.threads),
                    "int8": profiled_session(int8_path, tmp, args.threads)}
        for s in sessions.values():
            s.run(None, feed)  # warm-up, left out of the profile too
        walls = time_interleaved({k: lambda s=s: s.run(None, feed) for k, s in sessions.items()}, args.runs)
        kernels = {k: kernel_times(s.end_profiling()) for k, s in sessions.items()}

    fp32_all = sum(ms for _, ms in kernels["fp32"].values())
    int8_all = sum(ms for _, ms in kernels["int8"].values())
    fp32_layers = sum(ms or 0.0 for ms in layer_ms(kernels["fp32"], quantized).values())
    int8_layers = sum(ms for op, ms in kernels["int8"].values() if op in INTEGER_KERNELS)
    fp32_rest, int8_rest = fp32_all - fp32_layers, int8_all - int8_layers
    fp32_ms, int8_ms = walls["fp32"].median, walls["int8"].median
    figures = {
        "machine": this_platform().summary(), "threads": args.threads, "runs": args.runs,
        "fp32_ms": round(fp32_ms, 1), "int8_ms": round(int8_ms, 1), "speedup": round(fp32_ms / int8_ms, 3),
        "fp32_quantized_layers_ms": round(fp32_layers, 1), "fp32_other_ms": round(fp32_rest, 1),
        "int8_integer_kernels_ms": round(int8_layers, 1), "int8_other_ms": round(int8_rest, 1),
        "layer_speedup": round(fp32_layers / int8_layers, 2) if int8_layers else None,
        "ceiling": round((fp32_layers + fp32_rest) / int8_rest, 3) if int8_rest > 0 else None,
    }
    print(f"{args.folder.name} on {figures['machine']}, {args.threads} threads, median of {args.runs} alternating runs")
    print(f"  encoder: fp32 {fp32_ms:.1f} ms, int8 {int8_ms:.1f} ms -> {figures['speedup']:.2f}x")
    print(f"  kernel time in the quantized layers: fp32 {fp32_layers:.1f} ms, int8 {int8_layers:.1f} ms "
          f"(with its quantize ops) -> {figures['layer_speedup'] or '-'}x")
    print(f"  everything else: fp32 {fp32_rest:.1f} ms, int8 {int8_rest:.1f} ms")
    print(f"  ceiling with free integer layers: {figures['ceiling'] or '-'}x")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
