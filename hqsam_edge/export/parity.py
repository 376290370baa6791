"""Verify exported graphs against the PyTorch model, and fail loudly when they miss.

The reference is the fp32 PyTorch model; the graphs run under ONNX Runtime
on the CPU. The same image (``data.synthetic.demo_image``) and a fixed set of
prompts (a box, 1 and 10 points, a mask input, 8 boxes in one call) go
through both. Figures: the largest error of each output relative to the
reference's range, and the smallest mask IoU at the original resolution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import transforms as T
from ..data.synthetic import demo_image
from ..errors import ParityError
from ..eval.metrics import mask_iou
from . import contract as C

# Bounds for fp32 graphs (the export issue's acceptance figures).
MAX_REL_ERROR = 1e-3
MIN_MASK_IOU = 0.999


def rel_error(ours: np.ndarray, ref: np.ndarray) -> float:
    """Largest absolute difference divided by the reference's largest magnitude."""
    scale = float(np.abs(ref).max()) or 1.0
    return float(np.abs(ours.astype(np.float64) - ref).max() / scale)


def prompt_sets(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Decoder feeds in the 1024 frame for the check: box, 1 point, 10 points, mask input, 8 boxes."""
    rng = np.random.default_rng(seed)

    def feeds(coords, labels, mask=None):
        p = coords.shape[0]
        return {
            C.POINT_COORDS.name: coords.astype(np.float32),
            C.POINT_LABELS.name: labels.astype(np.float32),
            C.MASK_INPUT.name: np.zeros(C.MASK_INPUT.concrete(P=p), np.float32) if mask is None else mask,
            C.HAS_MASK_INPUT.name: np.full((p,), 0.0 if mask is None else 1.0, np.float32),
        }

    box = np.array([[[300.0, 150.0], [800.0, 600.0]]])
    boxes = np.sort(rng.uniform(0, 760, (8, 2, 2)), axis=1)
    boxes[:, 1] += 10
    ten = np.concatenate([rng.uniform(0, 1000, (1, 10, 2)), np.zeros((1, 1, 2))], axis=1)
    ten_labels = np.concatenate([rng.integers(0, 2, (1, 10)), -np.ones((1, 1))], axis=1)
    mask = rng.normal(0, 4, C.MASK_INPUT.concrete(P=1)).astype(np.float32)
    return {
        "box": feeds(box, np.array([[2, 3]])),
        "1_point": feeds(np.array([[[600.0, 340.0], [0, 0]]]), np.array([[1, -1]])),
        "10_points": feeds(ten, ten_labels),
        "mask_input": feeds(np.array([[[600.0, 340.0], [0, 0]]]), np.array([[1, -1]]), mask),
        "8_boxes": feeds(boxes, np.tile([[2, 3]], (8, 1))),
    }


def onnx_runners(encoder_path: Path, decoder_path: Path, *, exact_qdq: bool = False):
    """(encode, decode) over two ONNX Runtime CPU sessions, contract names in and out.

    ``exact_qdq``: no graph fusions, so Q/DQ graphs run as written (dequantized
    values into float layers): the arithmetic TensorRT's int8 kernels give up
    to rounding, instead of ONNX Runtime's x86 integer kernels (see
    ``calib.recipes``).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if exact_qdq:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    enc = ort.InferenceSession(str(encoder_path), options, providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(decoder_path), options, providers=["CPUExecutionProvider"])

    def encode(tensor: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip([o.name for o in enc.get_outputs()], enc.run(None, {C.IMAGE.name: tensor})))

    def decode(features: dict[str, np.ndarray], feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip([o.name for o in dec.get_outputs()], dec.run(None, {**features, **feeds})))

    return encode, decode


def compare_decoders(run_ref, run_ours, features_ref, features_ours, input_size, original_size) -> dict[str, Any]:
    """Run every prompt set through two decoders; relative logit error and mask IoU per set."""
    out: dict[str, Any] = {}
    for name, feeds in prompt_sets().items():
        ref = run_ref(features_ref, feeds)
        ours = run_ours(features_ours, feeds)
        masks_ref = T.postprocess_masks(ref[C.LOW_RES_MASKS.name], input_size, original_size) > 0
        masks_ours = T.postprocess_masks(ours[C.LOW_RES_MASKS.name], input_size, original_size) > 0
        ious = [mask_iou(a, b) for a, b in zip(masks_ours.reshape(-1, *original_size), masks_ref.reshape(-1, *original_size))]
        out[name] = {
            "low_res_masks_rel_error": rel_error(ours[C.LOW_RES_MASKS.name], ref[C.LOW_RES_MASKS.name]),
            "iou_predictions_rel_error": rel_error(ours[C.IOU_PREDICTIONS.name], ref[C.IOU_PREDICTIONS.name]),
            "min_mask_iou": min(ious),
        }
    return out


def torch_reference(model, multimask_output: bool, hq_token_only: bool):
    """(encode, decode) callables of the PyTorch model with contract-named numpy I/O."""

    @torch.no_grad()
    def encode(image: np.ndarray) -> dict[str, np.ndarray]:
        outs = model.encode(torch.from_numpy(image))
        return {s.name: t.numpy() for s, t in zip(C.encoder_outputs(model.is_hq), outs)}

    @torch.no_grad()
    def decode(features: dict[str, np.ndarray], feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        t = {k: torch.from_numpy(v) for k, v in {**features, **feeds}.items()}
        masks, iou = model.decode(
            t[C.IMAGE_EMBEDDINGS.name], t.get(C.HQ_FEATURES.name), t[C.POINT_COORDS.name], t[C.POINT_LABELS.name],
            t[C.MASK_INPUT.name], t[C.HAS_MASK_INPUT.name],
            multimask_output=multimask_output, hq_token_only=hq_token_only,
        )
        return {C.LOW_RES_MASKS.name: masks.numpy(), C.IOU_PREDICTIONS.name: iou.numpy()}

    return encode, decode


def check_parity(parity: dict[str, Any], max_rel_error: float, min_mask_iou: float, what: str) -> None:
    """Raise ``ParityError`` naming every figure that misses its bound, and by how much."""
    misses = []
    for graph, figures in parity.items():
        if not isinstance(figures, dict):
            continue
        for key, value in figures.items():
            if key.endswith("rel_error") and value > max_rel_error:
                misses.append(f"{graph}.{key} = {value:.2e} > {max_rel_error:.0e}")
            elif key.endswith("mask_iou") and value < min_mask_iou:
                misses.append(f"{graph}.{key} = {value:.4f} < {min_mask_iou}")
    if misses:
        raise ParityError(f"{what} misses the PyTorch model: {'; '.join(misses)}")


def verify_onnx_export(model, encoder_path: Path, decoder_path: Path, *, multimask_output: bool,
                       hq_token_only: bool, max_rel_error: float = MAX_REL_ERROR,
                       min_mask_iou: float = MIN_MASK_IOU) -> dict[str, Any]:
    """fp32 graphs under ONNX Runtime (CPU) vs the PyTorch model; ``ParityError`` on a miss."""
    image = demo_image(768, 1024)
    tensor, input_size = T.preprocess_image(image)
    encode_ref, decode_ref = torch_reference(model, multimask_output, hq_token_only)
    encode, decode = onnx_runners(encoder_path, decoder_path)
    features_ref = encode_ref(tensor)
    features_ours = encode(tensor)
    parity: dict[str, Any] = {
        "encoder": {f"{k}_rel_error": rel_error(features_ours[k], v) for k, v in features_ref.items()},
    }

    parity["decoder"] = compare_decoders(decode_ref, decode, features_ref, features_ours, input_size, image.shape[:2])
    flat = {"encoder": parity["encoder"], **{f"decoder[{k}]": v for k, v in parity["decoder"].items()}}
    check_parity(flat, max_rel_error, min_mask_iou, "the exported ONNX graph")
    parity["bounds"] = {"max_rel_error": max_rel_error, "min_mask_iou": min_mask_iou}
    return parity
