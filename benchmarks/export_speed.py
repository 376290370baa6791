"""Our ONNX graphs vs the official HQ-SAM code, on this machine, in one run.

Prints ratios measured in the same process (these machines are noisy):
- encoder: our encoder.onnx under ONNX Runtime vs the official PyTorch eager
  image encoder (``segment_anything_hq``);
- decoder: our decoder.onnx with 1 box, and 8 boxes in one call, vs the
  official exported decoder (``segment_anything_hq.utils.onnx.SamOnnxModel``,
  as its export script builds it: all ViT features fed, HQ fusion per call,
  one prompt per call, upscaling to the original size inside the graph).
  Ours is timed alone and with our runtime post-processing (upscaling to the
  original size) added, so that both do the same work.

    python benchmarks/export_speed.py --backbones vit_tiny vit_b --iters 5
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from hqsam_edge.data import transforms as T
from hqsam_edge.export import contract as C
from hqsam_edge.pipeline.export import ExportSpec, export_artifacts
from hqsam_edge.timing import time_calls


def median_ms(fn, iters: int) -> float:
    """Median wall ms of ``iters`` calls after one warm-up."""
    return time_calls(fn, iters, warmup=1).median


def official_model(backbone: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from segment_anything_hq import sam_model_registry
    return sam_model_registry[backbone]().eval()


def official_decoder_onnx(model, backbone: str, path: Path) -> None:
    """The official decoder export (scripts/export_onnx_model.py of sam-hq), with the
    early-feature width of each backbone (the official script assumes a ViT)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from segment_anything_hq.utils.onnx import SamOnnxModel
    onnx_model = SamOnnxModel(model, hq_token_only=False, multimask_output=False).eval()
    if backbone == "vit_tiny":
        interm = torch.randn(1, 1, 64, 64, 160)
    else:
        interm = torch.randn(4, 1, 64, 64, model.image_encoder.patch_embed.proj.out_channels)
    dummy = {
        "image_embeddings": torch.randn(1, 256, 64, 64),
        "interm_embeddings": interm,
        "point_coords": torch.randint(0, 1024, (1, 5, 2), dtype=torch.float),
        "point_labels": torch.randint(0, 4, (1, 5), dtype=torch.float),
        "mask_input": torch.randn(1, 1, 256, 256),
        "has_mask_input": torch.tensor([1], dtype=torch.float),
        "orig_im_size": torch.tensor([1500, 2250], dtype=torch.float),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(onnx_model, tuple(dummy.values()), str(path), input_names=list(dummy),
                          output_names=["masks", "iou_predictions", "low_res_masks"],
                          dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
                          opset_version=17, do_constant_folding=True, dynamo=False)
    return {k: v.numpy() for k, v in dummy.items()}


def bench(backbone: str, iters: int, workdir: Path) -> dict[str, float]:
    import onnxruntime as ort

    torch.set_num_threads(torch.get_num_threads())
    out = workdir / f"hq_{backbone}"
    export_artifacts(ExportSpec(backbone=backbone, random_weights=True, out=str(out), verify=False))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    enc = ort.InferenceSession(str(out / "encoder.onnx"), opts, providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(out / "decoder.onnx"), opts, providers=["CPUExecutionProvider"])

    ref = official_model(backbone)
    image = np.random.default_rng(0).normal(size=C.IMAGE.concrete(B=1)).astype(np.float32)
    x = torch.from_numpy(image)
    r: dict[str, float] = {}
    with torch.no_grad():
        r["official_torch_encoder_ms"] = median_ms(lambda: ref.image_encoder(x), max(2, iters // 2))
    r["ours_ort_encoder_ms"] = median_ms(lambda: enc.run(None, {C.IMAGE.name: image}), iters)

    feats = dict(zip([o.name for o in enc.get_outputs()], enc.run(None, {C.IMAGE.name: image})))

    def feeds(p: int) -> dict[str, np.ndarray]:
        coords = np.tile(np.array([[[100.0, 120.0], [700.0, 650.0]]], np.float32), (p, 1, 1))
        return {**feats, C.POINT_COORDS.name: coords, C.POINT_LABELS.name: np.tile(np.float32([[2, 3]]), (p, 1)),
                C.MASK_INPUT.name: np.zeros(C.MASK_INPUT.concrete(P=p), np.float32),
                C.HAS_MASK_INPUT.name: np.zeros((p,), np.float32)}

    f1, f8 = feeds(1), feeds(8)
    r["ours_decoder_1box_ms"] = median_ms(lambda: dec.run(None, f1), iters)
    r["ours_decoder_8box_ms"] = median_ms(lambda: dec.run(None, f8), iters)
    original = (1500, 2250)

    def ours_with_post():
        low = dec.run(None, f1)[0]
        T.postprocess_masks(low, (683, 1024), original)

    r["ours_decoder_1box_with_upscale_ms"] = median_ms(ours_with_post, iters)

    off_path = workdir / f"official_decoder_{backbone}.onnx"
    off_feeds = official_decoder_onnx(ref, backbone, off_path)
    off_feeds["point_coords"] = np.float32([[[100.0, 120.0], [700.0, 650.0]]])
    off_feeds["point_labels"] = np.float32([[2, 3]])
    off_feeds["has_mask_input"] = np.float32([0])
    off = ort.InferenceSession(str(off_path), opts, providers=["CPUExecutionProvider"])
    r["official_onnx_decoder_1box_ms"] = median_ms(lambda: off.run(None, off_feeds), iters)
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["vit_tiny", "vit_b"])
    parser.add_argument("--iters", type=int, default=5)
    args = parser.parse_args()
    import platform

    import onnxruntime

    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        for backbone in args.backbones:
            r = bench(backbone, args.iters, Path(tmp))
            print(f"\n## {backbone} (median of {args.iters}, ms)")
            for k, v in r.items():
                print(f"{k:<40}{v:10.1f}")
            official_dec, ours_dec = r["official_onnx_decoder_1box_ms"], r["ours_decoder_1box_ms"]
            print(f"encoder speed-up vs official PyTorch eager     "
                  f"{r['official_torch_encoder_ms'] / r['ours_ort_encoder_ms']:.2f}x")
            print(f"decoder speed-up vs official ONNX decoder      {official_dec / ours_dec:.2f}x"
                  f" ({official_dec / r['ours_decoder_1box_with_upscale_ms']:.2f}x with our upscaling)")
            print(f"8 boxes in one call / 1 box                    {r['ours_decoder_8box_ms'] / ours_dec:.2f}x"
                  f" ({r['ours_decoder_8box_ms'] / 8:.1f} ms per box)")


if __name__ == "__main__":
    main()
