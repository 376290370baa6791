"""Evaluation on the HQSeg-44K validation sets with any ``Predictor``: mIoU and boundary mIoU.

As the HQ-SAM paper reports (Table 1 etc.): one ground-truth box prompt per
image, mask IoU and boundary IoU (Cheng et al. 2021, band of 2% of the image
diagonal, ``hqsam_edge.eval.metrics``) against the original-resolution
ground truth (``> 128``), averaged over the images of each set (mIoU,
mBIoU), then the plain mean over the sets.

Two protocols (``EvalSpec.protocol``):

- ``"official"`` (default, the paper's numbers): as ``evaluate`` in the
  official ``train.py``: image and mask resized to 1024 x 1024 (bilinear, no
  aspect ratio kept, the image truncated to uint8), the box taken from the
  resized mask, and the 256 x 256 logits upsampled straight to the original
  mask size (bilinear) and thresholded at 0.
- ``"predictor"``: the deployment path a user runs: ``Predictor.set_image`` on
  the original image (SAM's longest-side resize), box from the original mask,
  masks as ``Predictor.predict_boxes`` returns them.

``hq_token_only`` None uses what the model or artifact folder was made with;
the official evaluation scores the HQ token's mask alone (``True``), while
``segment_anything_hq`` and the exported graphs default to SAM + HQ logits.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataError, UsageError
from ..inputs import EVAL_PROTOCOLS as PROTOCOLS, require_choice
from ..metrics import boundary_iou, mask_iou
from ..tables import Table

if TYPE_CHECKING:
    from ..data.hqseg import Sample
    from ..runtime.choice import ModelChoice
    from ..runtime.predictor import Predictor



@dataclass(frozen=True)
class EvalSpec:
    """What ``hqsam-edge eval`` measures; the defaults are the paper's."""

    data: str
    datasets: tuple[str, ...] = ()  # empty: DIS5K-VD, COIFT, HRSOD, ThinObject5k-TE
    limit: int | None = None  # the first N images (by name) of each set
    protocol: str = "official"
    hq_token_only: bool | None = None
    dilation_ratio: float = 0.02
    image_size: int = 1024

    def __post_init__(self) -> None:
        require_choice(self.protocol, PROTOCOLS, "protocol")
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"--limit must be at least 1, got {self.limit}")
        if not 0 < self.dilation_ratio < 1:
            raise UsageError(f"dilation_ratio must be in (0, 1), got {self.dilation_ratio}")


@dataclass(frozen=True)
class ImageScore:
    dataset: str
    name: str
    iou: float
    boundary_iou: float


@dataclass(frozen=True)
class SetScore:
    dataset: str
    count: int
    miou: float
    mbiou: float


@dataclass(frozen=True)
class EvalReport:
    """Scores of one predictor: per set, and the mean over the sets."""

    label: str
    protocol: str
    hq_token_only: bool | None
    sets: tuple[SetScore, ...]
    images: tuple[ImageScore, ...]

    @property
    def mean_miou(self) -> float:
        return float(np.mean([s.miou for s in self.sets]))

    @property
    def mean_mbiou(self) -> float:
        return float(np.mean([s.mbiou for s in self.sets]))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean_miou"], d["mean_mbiou"] = self.mean_miou, self.mean_mbiou
        return d


def predictor_label(predictor: Predictor) -> str:
    backend = predictor.backend
    return f"{backend.name} {backend.precision}"


def _box_for_predictor(box: np.ndarray) -> np.ndarray:
    """The official box has inclusive max indices, so a one-pixel-wide object gives x1 == x0; the
    Predictor rejects empty boxes, so such a side is widened by 1e-3 pixel (no visible change)."""
    box = box.astype(np.float64)
    box[2] = max(box[2], box[0] + 1e-3)
    box[3] = max(box[3], box[1] + 1e-3)
    return box


def _pick(masks: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The one prompt's best mask (``[1,M,...]`` -> ``[...]``)."""
    from ..runtime.predictor import best_masks

    return best_masks(masks, scores)[0][0]


def predict_mask(predictor: Predictor, image: np.ndarray, gt: np.ndarray, spec: EvalSpec,
                 sample: Sample | None = None) -> np.ndarray:
    """Boolean ``HxW`` prediction for the ground-truth box of ``gt`` (uint8 ``HxW``), per ``spec.protocol``."""
    import torch
    import torch.nn.functional as F

    from ..data.augment import resize_square, to_tensors
    from ..data.prompts import mask_box

    where = f" {sample.mask}" if sample is not None else ""
    if spec.protocol == "predictor":
        box = mask_box(gt)
        if box is None:
            raise DataError(f"ground-truth mask{where} has no foreground pixel (> 128): no box prompt")
        predictor.set_image(image)
        masks, scores, _ = predictor.predict_boxes(_box_for_predictor(box)[None], hq_token_only=spec.hq_token_only)
        return _pick(masks, scores)
    img_t, gt_t = resize_square(*to_tensors(image, gt), spec.image_size)
    box = mask_box(gt_t)
    if box is None:
        raise DataError(f"ground-truth mask{where} has no foreground pixel (> 128) at {spec.image_size}x"
                        f"{spec.image_size}: no box prompt")
    predictor.set_image(np.ascontiguousarray(img_t.to(torch.uint8).permute(1, 2, 0).numpy()))
    _, scores, low_res = predictor.predict_boxes(_box_for_predictor(box)[None], hq_token_only=spec.hq_token_only)
    low = torch.from_numpy(np.ascontiguousarray(_pick(low_res, scores), np.float32))[None, None]
    logits = F.interpolate(low, gt.shape, mode="bilinear", align_corners=False)[0, 0]
    return (logits > 0).numpy()


def score_image(predictor: Predictor, image: np.ndarray, gt: np.ndarray, spec: EvalSpec,
                sample: Sample | None = None) -> tuple[float, float]:
    """(mask IoU, boundary IoU) of the box-prompted prediction against ``gt > 128``."""
    pred = predict_mask(predictor, image, gt, spec, sample)
    truth = gt > 128
    return mask_iou(pred, truth), boundary_iou(truth, pred, spec.dilation_ratio)


def validation_samples(spec: EvalSpec) -> dict[str, list[Sample]]:
    """The validation images to score: ``{set name: samples}``, ``limit`` per set."""
    from ..data.hqseg import list_split

    sets = list_split(spec.data, spec.datasets, "val")
    return {name: samples[: spec.limit] if spec.limit else samples for name, samples in sets.items()}


def evaluate(predictor: Predictor, spec: EvalSpec, label: str | None = None,
             samples: dict[str, list[Sample]] | None = None) -> EvalReport:
    """Score ``predictor`` on the validation sets of ``spec``."""
    from .. import progress
    from ..data.hqseg import read_pair

    samples = samples if samples is not None else validation_samples(spec)
    label = label or predictor_label(predictor)
    total = sum(len(v) for v in samples.values())
    sets, images = [], []
    with progress.stage(f"eval: {label}", total=total, unit="image") as bar:
        for name, items in samples.items():
            scores = []
            for sample in items:
                image, gt = read_pair(sample)
                iou, biou = score_image(predictor, image, gt, spec, sample)
                scores.append((iou, biou))
                images.append(ImageScore(name, sample.name, iou, biou))
                bar.advance(detail=name)
            arr = np.asarray(scores, np.float64)
            sets.append(SetScore(name, len(items), float(arr[:, 0].mean()), float(arr[:, 1].mean())))
    return EvalReport(label, spec.protocol, spec.hq_token_only, tuple(sets), tuple(images))


def format_table(reports: list[EvalReport]) -> str:
    """``score_table`` as markdown."""
    return score_table(reports).markdown() if reports else ""


def score_table(reports: list[EvalReport]) -> Table:
    """Per set and the mean, mIoU / mBIoU (percent) of each report side by side, and with two or more
    reports the change of the last against the first (in points)."""
    head = ["data set", "images"]
    for r in reports:
        head += [f"{r.label} mIoU", f"{r.label} mBIoU"]
    delta = len(reports) > 1
    if delta:
        head += ["Δ mIoU", "Δ mBIoU"]
    rows = []
    first, last = reports[0], reports[-1]
    for i, s in enumerate(first.sets):
        row = [s.dataset, str(s.count)]
        for r in reports:
            row += [f"{100 * r.sets[i].miou:.2f}", f"{100 * r.sets[i].mbiou:.2f}"]
        if delta:
            row += [f"{100 * (last.sets[i].miou - s.miou):+.2f}", f"{100 * (last.sets[i].mbiou - s.mbiou):+.2f}"]
        rows.append(row)
    n = len(first.sets)
    row = [f"mean ({n} set{'s' if n != 1 else ''})", str(sum(s.count for s in first.sets))]
    for r in reports:
        row += [f"{100 * r.mean_miou:.2f}", f"{100 * r.mean_mbiou:.2f}"]
    if delta:
        row += [f"{100 * (last.mean_miou - first.mean_miou):+.2f}",
                f"{100 * (last.mean_mbiou - first.mean_mbiou):+.2f}"]
    rows.append(row)
    return Table(head, rows, numeric=frozenset(range(1, len(head))))


def evaluate_deployment(spec: EvalSpec, model: ModelChoice, *, reference: bool = True) -> list[EvalReport]:
    """Evaluate an artifact folder (with its backend / precision) or a checkpoint.

    For a folder run by anything other than PyTorch, the folder's fp32
    PyTorch model is scored first as the reference (``reference=False`` skips
    it), so the report shows whether the deployment keeps its accuracy.
    """
    from dataclasses import replace

    from ..errors import HQSamEdgeError

    samples = validation_samples(spec)  # data errors before any model is loaded
    predictor = model.open()
    targets = [(predictor, None)]
    if model.folder is not None and reference and predictor.backend.name != "torch":
        try:
            ref = replace(model, backend="torch", precision=None).open()
        except HQSamEdgeError as exc:
            raise type(exc)(f"{exc} (or pass --no-reference to score the deployment alone)") from None
        targets.insert(0, (ref, f"PyTorch {ref.backend.precision}"))
    return [evaluate(p, spec, label, samples) for p, label in targets]


def write_json(reports: list[EvalReport], path: str | Path) -> None:
    Path(path).write_text(json.dumps([r.to_dict() for r in reports], indent=1))
