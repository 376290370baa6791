"""Scoring YouTube-VIS results: spatio-temporal mask AP, and the tube boundary AP that HQ-YTVIS reports.

Ground truth is a YouTube-VIS annotation file (``{"videos": [{"id", "length", "height", "width", ...}],
"annotations": [{"video_id", "category_id", "segmentations": [RLE or None per frame], "iscrowd"}],
"categories": [...]}``, HQ-YTVIS's ``ytvis_hq-*.json`` layout); results are a list of ``{"video_id",
"category_id", "score", "segmentations"}``, one per predicted track.

The IoU of a predicted track and a true one is YouTube-VIS's (``ytvos``'s ``computeIoU``): over the frames of the
video, the summed intersections over the summed unions (a frame where both are absent adds nothing). Tube
boundary IoU (HQ-YTVIS, Ke et al., "Mask Transfiner", CVPR 2022) is the same sum over each frame's boundary
bands (``metrics.mask_boundary``: the pixels within 2% of the image diagonal of the contour), as in Boundary
IoU (Cheng et al., CVPR 2021). AP is COCO's: per category, detections in order of score are matched greedily
to the unmatched ground truth track they overlap best at IoU >= t, for t in 0.50:0.05:0.95; precision is made
monotone and read at 101 recall points; AP is the mean over thresholds, points and categories with ground
truth (at most ``max_dets`` = 100 detections per video and category, crowd tracks left out).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..apps.rle import rle_decode
from ..errors import DataError
from ..metrics import mask_boundary

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


@dataclass(frozen=True)
class VisScores:
    """AP, AP50, AP75 of the tube masks and of their boundaries (0..1; -1 where no category had ground truth)."""

    ap: float
    ap50: float
    ap75: float
    boundary_ap: float
    boundary_ap50: float
    boundary_ap75: float


def _masks(segmentations: Sequence, shape: tuple[int, int], length: int) -> list[np.ndarray | None]:
    out: list[np.ndarray | None] = []
    for t in range(length):
        rle = segmentations[t] if t < len(segmentations) else None
        if rle is None:
            out.append(None)
            continue
        mask = rle_decode(rle)
        if mask.shape != shape:
            raise DataError(f"a mask of {mask.shape[1]}x{mask.shape[0]} in a {shape[1]}x{shape[0]} video")
        out.append(mask)
    return out


def tube_iou(a: Sequence[np.ndarray | None], b: Sequence[np.ndarray | None]) -> float:
    """Summed intersections over summed unions, frame by frame (None: absent on that frame); 0 if both absent."""
    inter = union = 0
    for x, y in zip(a, b):
        if x is None and y is None:
            continue
        if x is None or y is None:
            union += int((x if x is not None else y).sum())  # type: ignore[union-attr]
            continue
        inter += int(np.logical_and(x, y).sum())
        union += int(np.logical_or(x, y).sum())
    return inter / union if union else 0.0


def boundaries(masks: Sequence[np.ndarray | None], dilation_ratio: float = 0.02) -> list[np.ndarray | None]:
    return [None if m is None else mask_boundary(m, dilation_ratio) for m in masks]


def _match(ious: np.ndarray, threshold: float) -> np.ndarray:
    """COCO's greedy matching for detections in score order (rows): whether each is a true positive."""
    taken = np.zeros(ious.shape[1], bool)
    tp = np.zeros(ious.shape[0], bool)
    for d in range(ious.shape[0]):
        best, m = min(threshold, 1 - 1e-10), -1
        for g in range(ious.shape[1]):
            if taken[g] or ious[d, g] < best:
                continue
            best, m = ious[d, g], g
        if m >= 0:
            taken[m], tp[d] = True, True
    return tp


def average_precision(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> float:
    """COCO's AP from detections' ``scores`` and true-positive flags (all videos of a category): precision
    made monotone, read at 101 recall points (0 past the highest recall reached)."""
    order = np.argsort(-scores, kind="mergesort")
    tps = np.cumsum(tp[order]).astype(float)
    fps = np.cumsum(~tp[order]).astype(float)
    recall = tps / n_gt
    precision = tps / np.maximum(tps + fps, np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")
    q = np.array([precision[i] if i < len(precision) else 0.0 for i in idx])
    return float(q.mean())


def evaluate_vis(gt: dict, results: list[dict], max_dets: int = 100, dilation_ratio: float = 0.02) -> VisScores:
    """Tube mask AP and tube boundary AP of ``results`` against ``gt`` (see the module's doc)."""
    videos = {v["id"]: v for v in gt["videos"]}
    cats = sorted({a["category_id"] for a in gt["annotations"] if not a.get("iscrowd", 0)})
    per_kind: dict[str, dict[int, list]] = {"mask": {}, "boundary": {}}
    for vid, video in videos.items():
        shape, length = (int(video["height"]), int(video["width"])), int(video["length"])
        for cat in cats:
            gts = [_masks(a["segmentations"], shape, length) for a in gt["annotations"]
                   if a["video_id"] == vid and a["category_id"] == cat and not a.get("iscrowd", 0)]
            dts = sorted((r for r in results if r["video_id"] == vid and r["category_id"] == cat),
                         key=lambda r: -r["score"])[:max_dets]
            dmasks = [_masks(r["segmentations"], shape, length) for r in dts]
            scores = np.array([r["score"] for r in dts], float)
            for kind in per_kind:
                prep = (lambda m: m) if kind == "mask" else (lambda m: boundaries(m, dilation_ratio))
                g, d = [prep(x) for x in gts], [prep(x) for x in dmasks]
                ious = np.array([[tube_iou(x, y) for y in g] for x in d]).reshape(len(d), len(g))
                tps = np.stack([_match(ious, t) for t in IOU_THRESHOLDS]) if len(d) else np.zeros((10, 0), bool)
                per_kind[kind].setdefault(cat, []).append((scores, tps, len(g)))
    out = []
    for kind in ("mask", "boundary"):
        table = np.full((len(IOU_THRESHOLDS), len(cats)), -1.0)
        for k, cat in enumerate(cats):
            parts = per_kind[kind].get(cat, [])
            n_gt = sum(p[2] for p in parts)
            if not n_gt:
                continue
            scores = np.concatenate([p[0] for p in parts])
            for t in range(len(IOU_THRESHOLDS)):
                tp = np.concatenate([p[1][t] for p in parts]).astype(bool)
                table[t, k] = average_precision(scores, tp, n_gt)
        valid = table[:, (table > -1).all(axis=0)]
        out += [_mean(valid), _mean(valid[0]), _mean(valid[5])]
    return VisScores(*out)


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else -1.0


def evaluate_files(gt_path: str | Path, results_path: str | Path) -> VisScores:
    """``evaluate_vis`` of two JSON files."""
    try:
        gt = json.loads(Path(gt_path).read_text())
        results = json.loads(Path(results_path).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the annotations or results: {exc}") from None
    if not isinstance(gt, dict) or not {"videos", "annotations"} <= set(gt):
        raise DataError(f"{gt_path} is not a YouTube-VIS annotation file (it needs 'videos' and 'annotations')")
    return evaluate_vis(gt, results)
