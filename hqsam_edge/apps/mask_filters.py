"""The everything mode's post-processing, as ``segment_anything_hq``'s ``SamAutomaticMaskGenerator`` computes it.

The steps, their order and their numbers are the official ones: Meta's
``segment_anything.utils.amg`` helpers and torchvision's ``batched_nms``, and
where one pass over each mask is cheaper than the official pass over all masks
for each quantity, exact equivalents (``mask_stats``: the stability score's
counts, the binary masks and their boxes, ``BLOCK_ROWS`` rows at a time while
they sit in the cache; ``rle.uncompressed_rle``: the RLE from one ravel). What
changes is where the steps run, never the answer:

- the predicted-IoU threshold is applied to the decoder's low-res output,
  before anything is upscaled (the IoU does not depend on the upscaling), so
  the costly part (upscaling to the image, the stability score there, boxes,
  RLE) is paid for the masks kept, not for every point, and in chunks of
  ``UPSCALE_CHUNK`` masks, so that memory stays bounded on large images;
- small-region removal decodes, cleans and re-boxes one mask at a time and
  re-encodes only the masks it changed (the official stacks every mask at the
  image's size first).

``low_res_stability`` (off by default) computes the stability score on the
256x256 low-res logits (the image's part of them) and thresholds it before
upscaling: a faster approximation, not the official answer; its agreement is
measured in ``benchmarks/RESULTS.md`` (``benchmarks/everything.py --low-res-stability``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..runtime.predictor import Predictor
from . import rle as rle_codec

UPSCALE_CHUNK = 16  # masks upscaled to the image at once
BLOCK_ROWS = 64  # rows of one mask scored at once (a block of a 2250-wide mask: 576 KB of logits)


@dataclass(frozen=True)
class MaskFilter:
    """The official generator's thresholds (``pred_iou_thresh`` ...) and the one approximation it does not have."""

    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    low_res_stability: bool = False
    mask_threshold: float = 0.0


def _empty() -> Any:
    from segment_anything.utils.amg import MaskData

    return MaskData(iou_preds=torch.zeros(0), points=torch.zeros(0, 2, dtype=torch.float64),
                    stability_score=torch.zeros(0), boxes=torch.zeros(0, 4, dtype=torch.int64), rles=[])


def concat(parts: list[Any]) -> Any:
    """``MaskData`` parts (each with the keys of the first) -> one, in order: ``MaskData.cat`` without its deep
    copies (the parts are fresh and not used again)."""
    from segment_anything.utils.amg import MaskData

    if not parts:
        return _empty()
    joined = {}
    for key, first in parts[0].items():
        values = [part[key] for part in parts]
        if isinstance(first, torch.Tensor):
            joined[key] = torch.cat(values)
        elif isinstance(first, np.ndarray):
            joined[key] = np.concatenate(values)
        else:
            joined[key] = [item for value in values for item in value]
    return MaskData(**joined)


def _stability(logits: torch.Tensor, f: MaskFilter) -> torch.Tensor:
    from segment_anything.utils.amg import calculate_stability_score

    return calculate_stability_score(logits, f.mask_threshold, f.stability_score_offset)  # the low-res approximation


def _low_res_region(engine: Predictor, low: np.ndarray) -> torch.Tensor:
    """The image's part of low-res logits ``[K,256,256]`` (the rest is the padding of the square frame)."""
    size = engine.info.image_size
    h, w = (math.ceil(s * low.shape[-1] / size) for s in engine.input_size)  # type: ignore[union-attr]
    return torch.from_numpy(np.ascontiguousarray(low[:, :h, :w]))


def mask_stats(logits: np.ndarray, f: MaskFilter) -> tuple[np.ndarray, np.ndarray, np.ndarray, torch.Tensor]:
    """Logits ``[K,H,W]`` -> the stability score's two pixel counts (above threshold + offset, above threshold -
    offset), the binary masks (above threshold) and their boxes (XYXY, 0 for an empty mask): what the official
    ``calculate_stability_score``, ``masks > threshold`` and ``batched_mask_to_box`` give, in one pass over each
    mask, ``BLOCK_ROWS`` rows at a time (which stay in the cache) instead of one pass over all masks for each."""
    k, h, w = logits.shape
    above = np.float32(f.mask_threshold + f.stability_score_offset)
    below = np.float32(f.mask_threshold - f.stability_score_offset)
    threshold = np.float32(f.mask_threshold)
    high, low = np.zeros(k, np.int64), np.zeros(k, np.int64)
    masks, rows, cols = np.empty((k, h, w), bool), np.empty((k, h), bool), np.zeros((k, w), bool)
    for i in range(k):
        for r in range(0, h, BLOCK_ROWS):
            block = logits[i, r : r + BLOCK_ROWS]
            high[i] += np.count_nonzero(block > above)
            low[i] += np.count_nonzero(block > below)
            binary = np.greater(block, threshold, out=masks[i, r : r + BLOCK_ROWS])
            rows[i, r : r + BLOCK_ROWS] = binary.any(axis=1)
            cols[i] |= binary.any(axis=0)
    empty = ~rows.any(axis=1)
    boxes = np.stack([cols.argmax(1), rows.argmax(1), w - 1 - cols[:, ::-1].argmax(1), h - 1 - rows[:, ::-1].argmax(1)],
                     axis=1)
    boxes[empty] = 0
    return high, low, masks, torch.from_numpy(boxes.astype(np.int64))


def stability_score(high: np.ndarray, low: np.ndarray) -> torch.Tensor:
    """The official ``calculate_stability_score`` from its two counts (int32 / int32, as there)."""
    return torch.from_numpy(high.astype(np.int32)) / torch.from_numpy(low.astype(np.int32))


def _upscaled(engine: Predictor, low: np.ndarray, data: Any, f: MaskFilter, crop_box: list[int],
              orig_size: tuple[int, int]) -> Any:
    """The masks of ``data`` (indices ``data["index"]`` into ``low``) upscaled to the crop, filtered by stability
    and crop edge, in the original frame as RLE: the official ``_process_batch`` after its IoU filter."""
    from segment_anything.utils.amg import is_box_near_crop_edge

    orig_h, orig_w = orig_size
    logits = engine.upscale_masks(low[data["index"].numpy()][:, None])[:, 0]
    high, low_count, data["masks"], data["boxes"] = mask_stats(logits, f)
    del logits
    if not f.low_res_stability:
        data["stability_score"] = stability_score(high, low_count)
        if f.stability_score_thresh > 0.0:
            data.filter(data["stability_score"] >= f.stability_score_thresh)
    keep = ~is_box_near_crop_edge(data["boxes"], crop_box, [0, 0, orig_w, orig_h])
    if not torch.all(keep):
        data.filter(keep)
    x0, y0, x1, y1 = crop_box
    pad = ((y0, orig_h - y1), (x0, orig_w - x1))  # the official ``uncrop_masks``
    data["rles"] = [rle_codec.uncompressed_rle(np.pad(m, pad) if any(map(any, pad)) else m) for m in data["masks"]]
    del data["masks"], data["index"]
    return data


def batch_masks(engine: Predictor, points: np.ndarray, low_res: np.ndarray, scores: np.ndarray, f: MaskFilter,
                crop_box: list[int], orig_size: tuple[int, int]) -> Any:
    """One batch of B points (crop pixels), its low-res logits ``[B,M,256,256]`` and scores ``[B,M]`` -> the
    ``MaskData`` the official ``_process_batch`` returns (``iou_preds``, ``points``, ``stability_score``,
    ``boxes`` in the crop frame, ``rles`` in the original frame)."""
    from segment_anything.utils.amg import MaskData

    m = low_res.shape[1]
    low = low_res.reshape(-1, *low_res.shape[2:])
    data = MaskData(iou_preds=torch.from_numpy(np.ascontiguousarray(scores.reshape(-1))),
                    points=torch.as_tensor(points.repeat(m, axis=0)), index=torch.arange(len(low)))
    if f.pred_iou_thresh > 0.0:
        data.filter(data["iou_preds"] > f.pred_iou_thresh)
    if f.low_res_stability:
        data["stability_score"] = _stability(_low_res_region(engine, low[data["index"].numpy()]), f)
        if f.stability_score_thresh > 0.0:
            data.filter(data["stability_score"] >= f.stability_score_thresh)
    return concat([_upscaled(engine, low, MaskData(**{k: v[start : start + UPSCALE_CHUNK] for k, v in data.items()}),
                             f, crop_box, orig_size) for start in range(0, len(data["index"]), UPSCALE_CHUNK)])


def remove_small_regions(data: Any, min_area: int, nms_thresh: float) -> Any:
    """The official ``postprocess_small_regions``: holes and islands under ``min_area`` pixels removed from every
    mask, duplicates that appear removed by box NMS preferring unchanged masks; ``data`` edited in place."""
    from segment_anything.utils.amg import batched_mask_to_box
    from segment_anything.utils.amg import remove_small_regions as clean
    from torchvision.ops.boxes import batched_nms

    if len(data["rles"]) == 0:
        return data
    boxes, scores, changed_rles = [], [], []
    for rle in data["rles"]:
        mask = rle_codec.rle_decode(rle)
        mask, holes = clean(mask, min_area, mode="holes")
        mask, islands = clean(mask, min_area, mode="islands")
        tensor = torch.as_tensor(mask)[None]
        boxes.append(batched_mask_to_box(tensor)[0])
        scores.append(float(not (holes or islands)))
        changed_rles.append(None if scores[-1] else rle_codec.uncompressed_rle(mask))
    boxes_t = torch.stack(boxes)
    keep = batched_nms(boxes_t.float(), torch.as_tensor(scores), torch.zeros_like(boxes_t[:, 0]),
                      iou_threshold=nms_thresh)
    for i in keep.tolist():
        if changed_rles[i] is not None:
            data["rles"][i] = changed_rles[i]
            data["boxes"][i] = boxes_t[i]
    data.filter(keep)
    return data


def records(data: Any, output_mode: str) -> list[dict[str, Any]]:
    """The official generator's mask records from its final ``MaskData`` (numpy): ``segmentation`` (a bool
    ``HxW`` mask, an uncompressed or a COCO RLE), ``area``, ``bbox`` (XYWH), ``predicted_iou``,
    ``point_coords``, ``stability_score``, ``crop_box`` (XYWH)."""
    from segment_anything.utils.amg import area_from_rle, box_xyxy_to_xywh

    encode = {"binary_mask": rle_codec.rle_decode, "uncompressed_rle": lambda r: r,
              "coco_rle": rle_codec.compress_rle}[output_mode]
    return [{"segmentation": encode(rle), "area": area_from_rle(rle), "bbox": box_xyxy_to_xywh(box).tolist(),
             "predicted_iou": iou.item(), "point_coords": [point.tolist()], "stability_score": stability.item(),
             "crop_box": box_xyxy_to_xywh(crop).tolist()}
            for rle, box, iou, point, stability, crop in zip(data["rles"], data["boxes"], data["iou_preds"],
                                                             data["points"], data["stability_score"],
                                                             data["crop_boxes"])]
