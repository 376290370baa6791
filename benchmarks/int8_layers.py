"""INT8 one layer at a time: ONNX Runtime's fused x86 kernels (8-bit and 7-bit weights) vs exact Q/DQ arithmetic.

For every GEMM the ONNX Runtime recipe quantizes, build the Q/DQ graph with
only that layer in int8 and report the encoder outputs' SQNR against fp32:
run by ONNX Runtime as usual (its U8S8 integer kernels), with 8-bit weights
and with 7-bit weights (``reduce_range``), and the 8-bit graph run without
fusions (dequantized values into float layers: the quantization's own error). Where
the fused 8-bit figure is far below the exact one, the kernel saturates.

    python benchmarks/int8_layers.py build/hq_vit_tiny [--limit 12]

Prints one row per layer; the calibration ranges are read from (or written
to) the folder's calibration cache, as ``hqsam-edge build`` does.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from hqsam_edge.calib import precision_graphs, recipes
from hqsam_edge.calib.precision_graphs import HELDOUT_SEED, PrecisionSpec
from hqsam_edge.export.manifest import read_manifest
from hqsam_edge.runtime.base import ModelInfo
from hqsam_edge.runtime.compare import sqnr_db
from hqsam_edge.runtime.onnxruntime_backend import OnnxRuntimeBackend


def encode(encoder: Path, decoder: Path, image, exact_qdq: bool = False) -> dict:
    """Encoder outputs under ONNX Runtime on the CPU (``exact_qdq``: Q/DQ as written, TensorRT's arithmetic)."""
    info = ModelInfo.from_manifest(read_manifest(encoder.parent))
    backend = OnnxRuntimeBackend(info, encoder, decoder, providers=["cpu"], exact_qdq=exact_qdq)
    with backend:
        return backend.features_to_numpy(backend.encode(image))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="artifact folder from `hqsam-edge export`")
    ap.add_argument("--calib-limit", type=int, default=8)
    ap.add_argument("--limit", type=int, default=None, help="only the first N layers")
    args = ap.parse_args()

    encoder, decoder = args.folder / "encoder.onnx", args.folder / "decoder.onnx"
    spec = PrecisionSpec(str(args.folder), precision="int8", calib_method="max", calib_limit=args.calib_limit)
    ranges, targets = precision_graphs.calibrate(args.folder, encoder, spec)
    targets = [t for t in targets if t.op_type in recipes.BACKEND_OPS["onnxruntime"]][: args.limit]
    image = next(iter(precision_graphs.CalibrationSet(None, limit=1, synthetic_seed=HELDOUT_SEED)))["image"]
    fp32 = encode(encoder, decoder, image)

    def sqnr(path: Path, exact: bool) -> str:
        ours = encode(path, decoder, image, exact_qdq=exact)
        return " ".join(f"{sqnr_db(ours[k], fp32[k]):6.1f}" for k in fp32)

    print(f"{'layer':60s} {'fused 8-bit':>14s} {'fused 7-bit':>14s} {'exact 8-bit':>14s}   (dB: {', '.join(fp32)})")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "one.onnx"
        for t in targets:
            recipes.int8_graph(encoder, path, ranges, [t], "onnxruntime", reduce_range=False)
            row = [sqnr(path, exact=False), "", sqnr(path, exact=True)]
            recipes.int8_graph(encoder, path, ranges, [t], "onnxruntime", reduce_range=True)
            row[1] = sqnr(path, exact=False)
            print(f"{t.node.removeprefix('/image_encoder/'):60s} {row[0]:>14s} {row[1]:>14s} {row[2]:>14s}", flush=True)


if __name__ == "__main__":
    main()
