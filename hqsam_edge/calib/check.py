"""Check a precision variant against the fp32 PyTorch model on held-out images.

Figures per variant: SQNR of each encoder output (dB), and over every held-out
image and prompt set (box, points, mask input, 8 boxes): mean and minimum
mask IoU and boundary IoU of the decoded masks at the original resolution.
A variant that misses its bound fails with a message saying by how much.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data import transforms as T
from ..errors import ParityError
from ..eval.metrics import boundary_iou, mask_iou
from ..export import contract as C
from ..export.parity import onnx_runners, prompt_sets, torch_reference


@dataclass(frozen=True)
class Bounds:
    """Acceptance bounds of a precision variant."""

    min_sqnr_db: float
    min_mean_mask_iou: float


BOUNDS = {"fp32": Bounds(60.0, 0.999), "fp16": Bounds(40.0, 0.99), "int8": Bounds(20.0, 0.97)}


def sqnr_db(ours: np.ndarray, ref: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of ``ours`` against ``ref``, in dB."""
    noise = float(np.mean((ours.astype(np.float64) - ref) ** 2))
    signal = float(np.mean(ref.astype(np.float64) ** 2))
    return float("inf") if noise == 0 else 10.0 * np.log10(signal / noise)


def check_variant(model, encoder_path: Path, decoder_path: Path, images: list[np.ndarray], *, precision: str,
                  multimask_output: bool, hq_token_only: bool, bounds: Bounds | None = None,
                  exact_qdq: bool = False) -> dict[str, Any]:
    """Run ``images`` through the graphs (ONNX Runtime, CPU) and the PyTorch model; ``ParityError`` on a miss.

    ``exact_qdq`` runs Q/DQ graphs unfused (the int8 arithmetic TensorRT does), for graphs made for TensorRT."""
    encode, decode = onnx_runners(encoder_path, decoder_path, exact_qdq=exact_qdq)
    return check_runners(model, encode, decode, images, precision=precision, multimask_output=multimask_output,
                         hq_token_only=hq_token_only, bounds=bounds)


def check_runners(model, encode: Callable, decode: Callable, images: list[np.ndarray], *, precision: str,
                  multimask_output: bool, hq_token_only: bool, bounds: Bounds | None = None) -> dict[str, Any]:
    """Any runtime's (encode, decode) against the PyTorch model (TensorRT engines use this too)."""
    bounds = bounds or BOUNDS[precision]
    encode_ref, decode_ref = torch_reference(model, multimask_output, hq_token_only)
    sqnr: dict[str, list[float]] = {}
    ious, bious = [], []
    for image in images:
        tensor, input_size = T.preprocess_image(image)
        ref_feats = encode_ref(tensor)
        our_feats = encode(tensor)
        for name, value in ref_feats.items():
            sqnr.setdefault(name, []).append(sqnr_db(our_feats[name], value))
        for feeds in prompt_sets().values():
            ref = decode_ref(ref_feats, feeds)[C.LOW_RES_MASKS.name]
            ours = decode(our_feats, feeds)[C.LOW_RES_MASKS.name]
            m_ref = T.postprocess_masks(ref, input_size, image.shape[:2]) > 0
            m_ours = T.postprocess_masks(ours, input_size, image.shape[:2]) > 0
            for a, b in zip(m_ours.reshape(-1, *image.shape[:2]), m_ref.reshape(-1, *image.shape[:2])):
                ious.append(mask_iou(a, b))
                bious.append(boundary_iou(a, b))
    figures = {
        "images": len(images),
        "sqnr_db": {k: float(np.mean(v)) for k, v in sqnr.items()},
        "mean_mask_iou": float(np.mean(ious)),
        "min_mask_iou": float(np.min(ious)),
        "mean_boundary_iou": float(np.mean(bious)),
        "min_boundary_iou": float(np.min(bious)),
        "bounds": {"min_sqnr_db": bounds.min_sqnr_db, "min_mean_mask_iou": bounds.min_mean_mask_iou},
    }
    misses = [f"{name} SQNR {v:.1f} dB < {bounds.min_sqnr_db:.0f} dB (short by {bounds.min_sqnr_db - v:.1f} dB)"
              for name, v in figures["sqnr_db"].items() if v < bounds.min_sqnr_db]
    if figures["mean_mask_iou"] < bounds.min_mean_mask_iou:
        misses.append(f"mean mask IoU {figures['mean_mask_iou']:.4f} < {bounds.min_mean_mask_iou} "
                      f"(short by {bounds.min_mean_mask_iou - figures['mean_mask_iou']:.4f})")
    if misses:
        raise ParityError(f"the {precision} variant misses the fp32 PyTorch model: {'; '.join(misses)}")
    return figures
