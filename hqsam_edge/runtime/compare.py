"""The one check of every deployment artifact: a candidate backend against a reference, on the same inputs.

The exported fp32 graphs (``hqsam-edge export``), the FP16 / INT8 graphs
(``build --backend onnxruntime``) and the TensorRT engines (``build --backend
tensorrt``) are each opened as a ``Backend`` and compared here with the fp32
PyTorch model (a ``TorchBackend`` on the CPU): the same images go through both
encoders, the same prompt sets through both decoders, each decoder reading its
own encoder's outputs.

Figures (``compare``), per encoder output: the largest error relative to the
reference's largest magnitude (``rel_error``, worst image) and the SQNR in dB
(``sqnr_db``, mean over the images); per prompt set (a box, one point, many
points, a mask input, many boxes in one call) and choice of masks
(``multimask_output``, ``hq_token_only``; the candidate's own by default): the
relative error of the low-res logits and of the IoU predictions (worst image)
and the smallest and mean mask IoU at the original resolution; over every mask: mean and smallest
mask IoU and boundary IoU. ``check`` holds them against ``Bounds`` and raises
``ParityError`` naming every miss and by how much.

The prompt sets stay inside the candidate's profile: a TensorRT decoder built
with ``--max-points N`` gets at most N points per prompt (``max_points``);
more prompts than its ``--max-prompts`` are split into calls by the backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..data import transforms as T
from ..errors import ParityError
from ..export import contract as C
from ..metrics import boundary_iou, mask_iou
from .base import Backend

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class Bounds:
    """What a candidate must meet; ``None`` leaves a figure unchecked."""

    max_rel_error: float | None = None  # every encoder output and decoder output, relative to the reference
    min_mask_iou: float | None = None  # every mask
    min_sqnr_db: float | None = None  # every encoder output (mean over the images)
    min_mean_mask_iou: float | None = None  # mean over every mask

    def to_dict(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if v is not None}


# The exported fp32 graphs against PyTorch: the same arithmetic up to float rounding.
EXPORT_BOUNDS = Bounds(max_rel_error=1e-3, min_mask_iou=0.999)
# Precision variants (graphs and engines) against the fp32 PyTorch model.
PRECISION_BOUNDS = {
    "fp32": Bounds(min_sqnr_db=60.0, min_mean_mask_iou=0.999),
    "fp16": Bounds(min_sqnr_db=40.0, min_mean_mask_iou=0.99),
    "int8": Bounds(min_sqnr_db=20.0, min_mean_mask_iou=0.97),
}
CHECK_POINTS = 10  # points of the many-points prompt set (fewer when a profile bounds them)
CHECK_BOXES = 8  # boxes of the many-boxes prompt set


def rel_error(ours: np.ndarray, ref: np.ndarray) -> float:
    """Largest absolute difference divided by the reference's largest magnitude."""
    scale = float(np.abs(ref).max()) or 1.0
    return float(np.abs(ours.astype(np.float64) - ref).max() / scale)


def sqnr_db(ours: np.ndarray, ref: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of ``ours`` against ``ref``, in dB."""
    noise = float(np.mean((ours.astype(np.float64) - ref) ** 2))
    signal = float(np.mean(ref.astype(np.float64) ** 2))
    return float("inf") if noise == 0 else 10.0 * np.log10(signal / noise)


def _feeds(coords: np.ndarray, labels: np.ndarray, mask: np.ndarray | None = None) -> Feeds:
    p = coords.shape[0]
    return {
        C.POINT_COORDS.name: coords.astype(np.float32),
        C.POINT_LABELS.name: labels.astype(np.float32),
        C.MASK_INPUT.name: np.zeros(C.MASK_INPUT.concrete(P=p), np.float32) if mask is None else mask,
        C.HAS_MASK_INPUT.name: np.full((p,), 0.0 if mask is None else 1.0, np.float32),
    }


def prompt_sets(max_points: int | None = None, seed: int = 0) -> dict[str, Feeds]:
    """Decoder feeds in the 1024 frame: a box, 1 point, many points, a mask input, many boxes in one call.

    ``max_points`` bounds N (a decoder profile's): the many-points set gets
    ``max_points - 1`` points and its padding point.
    """
    rng = np.random.default_rng(seed)
    n = CHECK_POINTS if max_points is None else max(1, min(CHECK_POINTS, max_points - 1))
    box = np.array([[[300.0, 150.0], [800.0, 600.0]]])
    boxes = np.sort(rng.uniform(0, 760, (CHECK_BOXES, 2, 2)), axis=1)
    boxes[:, 1] += 10
    points = np.concatenate([rng.uniform(0, 1000, (1, CHECK_POINTS, 2))[:, :n], np.zeros((1, 1, 2))], axis=1)
    labels = np.concatenate([rng.integers(0, 2, (1, CHECK_POINTS))[:, :n], -np.ones((1, 1))], axis=1)
    mask = rng.normal(0, 4, C.MASK_INPUT.concrete(P=1)).astype(np.float32)
    click = np.array([[[600.0, 340.0], [0, 0]]])
    corners = [[C.LABEL_BOX_TOP_LEFT, C.LABEL_BOX_BOTTOM_RIGHT]]
    return {
        "box": _feeds(box, np.array(corners)),
        "1_point": _feeds(click, np.array([[C.LABEL_POSITIVE, C.LABEL_PAD]])),
        f"{n}_points": _feeds(points, labels),
        "mask_input": _feeds(click, np.array([[C.LABEL_POSITIVE, C.LABEL_PAD]]), mask),
        f"{CHECK_BOXES}_boxes": _feeds(boxes, np.tile(corners, (CHECK_BOXES, 1))),
    }


class _Tally:
    """Running figures over images and prompt sets."""

    def __init__(self) -> None:
        self.encoder: dict[str, dict[str, list[float]]] = {}
        self.decoder: dict[str, dict[str, list[float]]] = {}
        self.ious: list[float] = []
        self.bious: list[float] = []

    def add_encoder(self, name: str, ours: np.ndarray, ref: np.ndarray) -> None:
        entry = self.encoder.setdefault(name, {"rel_error": [], "sqnr_db": []})
        entry["rel_error"].append(rel_error(ours, ref))
        entry["sqnr_db"].append(sqnr_db(ours, ref))

    def add_decoder(self, name: str, ours: Feeds, ref: Feeds, input_size: tuple[int, int],
                    original_size: tuple[int, int]) -> None:
        entry = self.decoder.setdefault(name, {"low_res_masks_rel_error": [], "iou_predictions_rel_error": [],
                                               "mask_iou": []})
        for spec in C.decoder_outputs():
            entry[f"{spec.name}_rel_error"].append(rel_error(ours[spec.name], ref[spec.name]))
        masks_ours = T.postprocess_masks(ours[C.LOW_RES_MASKS.name], input_size, original_size) > 0
        masks_ref = T.postprocess_masks(ref[C.LOW_RES_MASKS.name], input_size, original_size) > 0
        for a, b in zip(masks_ours.reshape(-1, *original_size), masks_ref.reshape(-1, *original_size)):
            entry["mask_iou"].append(mask_iou(a, b))
            self.ious.append(entry["mask_iou"][-1])
            self.bious.append(boundary_iou(a, b))

    def figures(self, images: int) -> dict[str, Any]:
        return {
            "images": images,
            "encoder": {name: {"rel_error": max(v["rel_error"]), "sqnr_db": float(np.mean(v["sqnr_db"]))}
                        for name, v in self.encoder.items()},
            "decoder": {name: {"low_res_masks_rel_error": max(v["low_res_masks_rel_error"]),
                               "iou_predictions_rel_error": max(v["iou_predictions_rel_error"]),
                               "min_mask_iou": min(v["mask_iou"]), "mean_mask_iou": float(np.mean(v["mask_iou"]))}
                        for name, v in self.decoder.items()},
            "mean_mask_iou": float(np.mean(self.ious)),
            "min_mask_iou": float(np.min(self.ious)),
            "mean_boundary_iou": float(np.mean(self.bious)),
            "min_boundary_iou": float(np.min(self.bious)),
        }


Choice = tuple[bool, bool]  # (multimask_output, hq_token_only) of a decoder call


def mask_choices(is_hq: bool) -> tuple[Choice, ...]:
    """Every choice of masks a call can make (``hq_token_only`` exists for HQ-SAM only)."""
    return ((False, False), (True, False), (False, True), (True, True)) if is_hq else ((False, False), (True, False))


def _choice_label(name: str, choice: Choice, default: Choice) -> str:
    """Figures of the default choice keep the prompt set's name; others add theirs: ``box [multimask]``."""
    if choice == default:
        return name
    parts = [label for label, on in zip(("multimask", "hq_token_only"), choice) if on]
    return f"{name} [{'+'.join(parts) or 'single mask'}]"


def compare(reference: Backend, candidate: Backend, images: Sequence[np.ndarray],
            prompts: dict[str, Feeds] | None = None, choices: Sequence[Choice] | None = None) -> dict[str, Any]:
    """Figures of ``candidate`` against ``reference`` on ``images`` (``HxWx3`` uint8) and ``prompts``
    (default: ``prompt_sets`` within the candidate's ``max_points``), for each of the mask ``choices``
    (default: the candidate's own; each prompt set is decoded once and every choice made from the same
    outputs). Both backends are activated here if they are not yet (and left as they were found)."""
    if not images:
        raise ValueError("compare needs at least one image")
    default = (candidate.info.multimask_output, candidate.info.hq_token_only)
    choices = tuple(choices or (default,))
    tally = _Tally()
    opened = [b for b in (reference, candidate) if not b.is_active]
    for backend in opened:
        backend.activate()
    try:
        prompts = prompts if prompts is not None else prompt_sets(candidate.max_points)  # known once active
        for image in images:
            tensor, input_size = T.preprocess_image(image, candidate.info.image_size)
            ref_features, our_features = reference.encode(tensor), candidate.encode(tensor)
            ref_np = reference.features_to_numpy(ref_features)
            ours_np = candidate.features_to_numpy(our_features)
            for name, value in ref_np.items():
                tally.add_encoder(name, ours_np[name], value)
            for name, feeds in prompts.items():
                ours, ref = candidate.decode_tokens(our_features, feeds), reference.decode_tokens(ref_features, feeds)
                for choice in choices:
                    options = dict(multimask_output=choice[0], hq_token_only=choice[1])
                    tally.add_decoder(_choice_label(name, choice, default), candidate.choose(ours, **options),
                                      reference.choose(ref, **options), input_size, image.shape[:2])
    finally:
        for backend in opened:
            backend.deactivate()
    return tally.figures(len(images))


def check(figures: dict[str, Any], bounds: Bounds, what: str) -> dict[str, Any]:
    """``figures`` (of ``compare``) with ``bounds`` recorded; ``ParityError`` naming every miss and by how much."""
    misses = []
    for name, enc in figures["encoder"].items():
        if bounds.max_rel_error is not None and enc["rel_error"] > bounds.max_rel_error:
            misses.append(f"{name} relative error {enc['rel_error']:.2e} > {bounds.max_rel_error:.0e}")
        if bounds.min_sqnr_db is not None and enc["sqnr_db"] < bounds.min_sqnr_db:
            misses.append(f"{name} SQNR {enc['sqnr_db']:.1f} dB < {bounds.min_sqnr_db:.0f} dB "
                          f"(short by {bounds.min_sqnr_db - enc['sqnr_db']:.1f} dB)")
    for name, dec in figures["decoder"].items():
        for key in ("low_res_masks_rel_error", "iou_predictions_rel_error"):
            if bounds.max_rel_error is not None and dec[key] > bounds.max_rel_error:
                misses.append(f"decoder[{name}] {key.removesuffix('_rel_error')} relative error {dec[key]:.2e} "
                              f"> {bounds.max_rel_error:.0e}")
        if bounds.min_mask_iou is not None and dec["min_mask_iou"] < bounds.min_mask_iou:
            misses.append(f"decoder[{name}] mask IoU {dec['min_mask_iou']:.4f} < {bounds.min_mask_iou} "
                          f"(short by {bounds.min_mask_iou - dec['min_mask_iou']:.4f})")
    if bounds.min_mean_mask_iou is not None and figures["mean_mask_iou"] < bounds.min_mean_mask_iou:
        misses.append(f"mean mask IoU {figures['mean_mask_iou']:.4f} < {bounds.min_mean_mask_iou} "
                      f"(short by {bounds.min_mean_mask_iou - figures['mean_mask_iou']:.4f})")
    if misses:
        raise ParityError(f"{what} misses the fp32 PyTorch model: {'; '.join(misses)}")
    return {**figures, "bounds": bounds.to_dict()}


def encoder_sqnr(figures: dict[str, Any]) -> dict[str, float]:
    """``{encoder output: SQNR dB}`` of a figures dict (for one-line summaries)."""
    return {name: enc["sqnr_db"] for name, enc in figures.get("encoder", {}).items()}
