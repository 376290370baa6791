"""Everything mode: our ``SamAutomaticMaskGenerator`` under ONNX Runtime vs the official generator, in one run.

Light HQ-SAM (``vit_tiny``) with random weights saved in the official format (official initialisation, seed 5,
perturbed as the tests' checkpoints), loaded by the official model and exported to an artifact folder for ours; one
synthetic picture (``data.synthetic.demo_image``, 1500x2250 by default); the same generator options for both. Prints
each side's time split into encoder (``set_image`` of every crop), decoder (the mask decoder calls: the official
``mask_decoder.forward``; ours the decoder graph plus the mask choice) and the rest (post-processing: upscaling,
stability, boxes, NMS, RLE, records), the masks each finds and how many match (mask IoU >= 0.98, both ways).

The thresholds default to 0 (every mask is upscaled and scored, as the official always does: the least our
IoU-first order can save); pass ``--pred-iou-thresh`` / ``--stability-score-thresh`` for others.
``--low-res-stability`` also runs ours with the stability score from the low-res logits and prints its agreement
with the exact answer (use a stability threshold that removes masks). ``--scaling B ...`` times ours for each
``points_per_batch`` B (on a ``--scaling-points-per-side`` grid).

    python benchmarks/everything.py --rounds 2
    python benchmarks/everything.py --stability-score-thresh 0.2 --box-nms-thresh 1.0 --skip-official \
        --low-res-stability --scaling 16 32 64 128
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from hqsam_edge.model.random_weights import perturb_


def random_checkpoint(path: Path, seed: int) -> None:
    """Light HQ-SAM in the official format: the official initialisation (seeded), every floating-point tensor
    perturbed (``model.random_weights.perturb_``, as in the tests: every part matters, the masks vary), saved as a
    .pth."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from segment_anything_hq.build_sam import build_sam_vit_t
    torch.manual_seed(seed)
    model = perturb_(build_sam_vit_t())
    torch.save(model.state_dict(), path)


def official_side(path: Path):
    """The official model from the checkpoint, its encoder and decoder wrapped with timers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from segment_anything_hq.build_sam import build_sam_vit_t
    model = build_sam_vit_t()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.eval()  # after loading: TinyViT's attention-bias cache (see shared/findings.md)
    timings = {"encoder": 0.0, "decoder": 0.0}
    for part, module in (("encoder", model.image_encoder), ("decoder", model.mask_decoder)):
        forward = module.forward

        def timed(*args, _forward=forward, _part=part, **kwargs):
            t0 = time.perf_counter()
            try:
                return _forward(*args, **kwargs)
            finally:
                timings[_part] += time.perf_counter() - t0

        module.forward = timed
    return model, timings


def run_official(model, timings: dict, image: np.ndarray, options: dict) -> tuple[list, dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from segment_anything_hq import SamAutomaticMaskGenerator
    generator = SamAutomaticMaskGenerator(model, **options)
    timings.update(encoder=0.0, decoder=0.0)
    t0 = time.perf_counter()
    with torch.no_grad():
        records = generator.generate(image)
    total = time.perf_counter() - t0
    return records, {"encoder": timings["encoder"], "decoder": timings["decoder"],
                     "postprocess": total - timings["encoder"] - timings["decoder"], "total": total}


def run_ours(predictor, image: np.ndarray, options: dict) -> tuple[list, dict]:
    from hqsam_edge import SamAutomaticMaskGenerator

    generator = SamAutomaticMaskGenerator(predictor, **options)
    t0 = time.perf_counter()
    records = generator.generate(image)
    return records, {**generator.timings, "total": time.perf_counter() - t0}


def agreement(a: list[dict], b: list[dict]) -> tuple[int, int]:
    """Masks of ``a`` matched by a mask of ``b`` from the same prompt and crop at mask IoU >= 0.98, and of ``b``
    by ``a`` (each point's mask is decided on its own before NMS, so a mask is compared with its own prompt's)."""
    def key(r):
        return (tuple(r["point_coords"][0]), tuple(r["crop_box"]))

    def matched(x: list[dict], y: list[dict]) -> int:
        by_key: dict = {}
        for r in y:
            by_key.setdefault(key(r), []).append(r["segmentation"])
        count = 0
        for r in x:
            m = r["segmentation"]
            for other in by_key.get(key(r), []):
                union = np.logical_or(m, other).sum()
                if union and np.logical_and(m, other).sum() / union >= 0.98:
                    count += 1
                    break
        return count

    return matched(a, b), matched(b, a)


def line(name: str, t: dict, n: int) -> str:
    return (f"| {name} | {t['encoder']:.1f} | {t['decoder']:.1f} | {t['postprocess']:.1f} | {t['total']:.1f} | {n} |")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=1500)
    parser.add_argument("--width", type=int, default=2250)
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--points-per-batch", type=int, default=64)
    parser.add_argument("--pred-iou-thresh", type=float, default=0.0)
    parser.add_argument("--stability-score-thresh", type=float, default=0.0)
    parser.add_argument("--box-nms-thresh", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=5, help="seed of the random weights' official initialisation")
    parser.add_argument("--threads", type=int, default=None, help="torch and ONNX Runtime threads (default: theirs)")
    parser.add_argument("--low-res-stability", action="store_true")
    parser.add_argument("--scaling", nargs="*", type=int, default=[])
    parser.add_argument("--scaling-points-per-side", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1,
                        help="interleaved rounds of ours vs the official (median kept)")
    parser.add_argument("--skip-official", action="store_true", help="only ours (with --scaling / --low-res-stability)")
    return parser.parse_args()


def versus_official(checkpoint: Path, predictor, image: np.ndarray, options: dict, rounds: int) -> None:
    """Ours and the official generator, interleaved (ours first in even rounds, second in odd ones); the median
    total of each side, and the split of each side's median round."""
    model, timers = official_side(checkpoint)
    runs: dict[str, list] = {"ours": [], "official": []}
    for r in range(rounds):
        for side in (("ours", "official") if r % 2 == 0 else ("official", "ours")):
            out = run_ours(predictor, image, options) if side == "ours" else run_official(model, timers, image, options)
            runs[side].append(out)
            name = "ours, ONNX Runtime" if side == "ours" else "official (PyTorch eager)"
            print(line(f"{name}, round {r + 1}", out[1], len(out[0])), flush=True)
    (ours, t_ours), (ref, t_ref) = (sorted(runs[k], key=lambda o: o[1]["total"])[(rounds - 1) // 2] for k in runs)
    a, b = agreement(ref, ours)
    print(f"\nmedian rounds: speed-up {t_ref['total'] / t_ours['total']:.2f}x (decoder "
          f"{t_ref['decoder'] / t_ours['decoder']:.2f}x, encoder {t_ref['encoder'] / t_ours['encoder']:.2f}x, "
          f"post-processing {t_ref['postprocess'] / max(t_ours['postprocess'], 1e-9):.2f}x); official masks matched "
          f"by ours {a}/{len(ref)}, ours by the official {b}/{len(ours)}", flush=True)


def low_res_agreement(predictor, image: np.ndarray, options: dict, ours: list, t_ours: dict) -> None:
    fast, t_fast = run_ours(predictor, image, {**options, "low_res_stability": True})
    a, b = agreement(ours, fast)
    print(line("ours, low_res_stability", t_fast, len(fast)))
    print(f"low_res_stability: exact masks matched {a}/{len(ours)}, approximate ones matched {b}/{len(fast)}; "
          f"post-processing {t_ours['postprocess'] / max(t_fast['postprocess'], 1e-9):.2f}x faster", flush=True)


def scaling(predictor, image: np.ndarray, options: dict, batches: list[int], side: int) -> None:
    print(f"\n{side}x{side} points, ours:\n"
          "| points_per_batch | decoder s | ms per point | total s |\n|---:|---:|---:|---:|")
    for batch in batches:
        _, t = run_ours(predictor, image, {**options, "points_per_side": side, "points_per_batch": batch})
        print(f"| {batch} | {t['decoder']:.1f} | {1000 * t['decoder'] / side ** 2:.1f} | {t['total']:.1f} |",
              flush=True)


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from hqsam_edge import Predictor, SamPredictor
    from hqsam_edge.data.synthetic import demo_image
    from hqsam_edge.pipeline.export import ExportSpec, export_artifacts
    from hqsam_edge.runtime.open import open_backend

    options = dict(points_per_side=args.points_per_side, points_per_batch=args.points_per_batch,
                   pred_iou_thresh=args.pred_iou_thresh, stability_score_thresh=args.stability_score_thresh,
                   box_nms_thresh=args.box_nms_thresh)
    image = demo_image(args.height, args.width)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "sam_hq_vit_tiny_random.pth"
        random_checkpoint(checkpoint, args.seed)
        folder = Path(tmp) / "hq_vit_tiny"
        export_artifacts(ExportSpec(checkpoint=str(checkpoint), out=str(folder), verify=False))
        backend = open_backend(folder, backend="onnxruntime")
        backend.threads = args.threads
        predictor = SamPredictor(Predictor(backend))
        print(f"image {args.height}x{args.width}, {args.points_per_side}x{args.points_per_side} points, "
              f"{args.points_per_batch} per batch, thresholds iou {args.pred_iou_thresh} "
              f"stability {args.stability_score_thresh}, box NMS {args.box_nms_thresh}, threads "
              f"{args.threads or 'default'}", flush=True)
        print("| generator | encoder s | decoder s | post-processing s | total s | masks |\n"
              "|---|---:|---:|---:|---:|---:|")
        if not args.skip_official:
            versus_official(checkpoint, predictor, image, options, args.rounds)
        if args.low_res_stability:
            ours, t_ours = run_ours(predictor, image, options)
            print(line("ours, ONNX Runtime", t_ours, len(ours)), flush=True)
            quantiles = {k: np.round(np.percentile([r[k] for r in ours], [10, 50, 90]), 3).tolist() if ours else []
                         for k in ("predicted_iou", "stability_score")}
            print(f"(10/50/90th percentiles of the kept masks' {quantiles})", flush=True)
            low_res_agreement(predictor, image, options, ours, t_ours)
        if args.scaling:
            scaling(predictor, image, options, args.scaling, args.scaling_points_per_side)
        predictor.close()


if __name__ == "__main__":
    main()
