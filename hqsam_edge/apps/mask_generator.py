"""``SamAutomaticMaskGenerator``: segment everything, with ``segment_anything_hq``'s names, defaults and records,
on every backend::

    from hqsam_edge import SamAutomaticMaskGenerator, SamPredictor, sam_model_registry
    masks = SamAutomaticMaskGenerator(sam_model_registry["vit_tiny"](checkpoint="sam_hq_vit_tiny.pth")).generate(image)
    masks = SamAutomaticMaskGenerator(SamPredictor.from_artifacts("build/hq_vit_tiny")).generate(image)

A grid of one-point prompts over the image (and over crops of it, with
``crop_n_layers``) goes to the decoder ``points_per_batch`` points at a time,
as P prompts of one call (split by the backend into calls of its profile's
``max_prompts``); each crop is encoded once. The masks are filtered and merged
as the official generator does it (``mask_filters``): predicted IoU, stability
score, crop edges, box NMS in each crop and across crops, small regions.

``generate`` records where its time went in ``timings`` (seconds of encoder,
decoder and everything else).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from ..data.transforms import check_rgb
from ..runtime.sam_predictor import SamPredictor
from . import mask_filters
from .generator_options import GeneratorOptions


class SamAutomaticMaskGenerator:
    """``segment_anything_hq.SamAutomaticMaskGenerator`` over any backend (see the module doc).

    ``model``: our model, an official ``Sam`` object, a ``SamPredictor`` (e.g.
    ``SamPredictor.from_artifacts(folder)``) or a ``Predictor``. The options are
    the official ones, with its defaults (``GeneratorOptions``).
    """

    def __init__(self, model: Any, points_per_side: int | None = 32, points_per_batch: int = 64,
                 pred_iou_thresh: float = 0.88, stability_score_thresh: float = 0.95,
                 stability_score_offset: float = 1.0, box_nms_thresh: float = 0.7, crop_n_layers: int = 0,
                 crop_nms_thresh: float = 0.7, crop_overlap_ratio: float = 512 / 1500,
                 crop_n_points_downscale_factor: int = 1, point_grids: Sequence[np.ndarray] | None = None,
                 min_mask_region_area: int = 0, output_mode: str = "binary_mask", *,
                 low_res_stability: bool = False) -> None:
        self.options = GeneratorOptions(
            points_per_side, points_per_batch, pred_iou_thresh, stability_score_thresh, stability_score_offset,
            box_nms_thresh, crop_n_layers, crop_nms_thresh, crop_overlap_ratio, crop_n_points_downscale_factor,
            point_grids, min_mask_region_area, output_mode, low_res_stability)
        self.point_grids = self.options.grids()
        self.predictor = model if isinstance(model, SamPredictor) else SamPredictor(model, keep_interm_features=False)
        self.timings: dict[str, float] = {}

    @classmethod
    def from_options(cls, model: Any, options: GeneratorOptions) -> SamAutomaticMaskGenerator:
        """Over ``model`` (as the constructor) with an options group."""
        return cls(model, **{f.name: getattr(options, f.name) for f in fields(options)})

    @classmethod
    def from_artifacts(cls, folder: str | Path, backend: str = "auto", precision: str | None = None,
                       **options: Any) -> SamAutomaticMaskGenerator:
        """Over an artifact folder (``backend``: auto, torch, onnxruntime, tensorrt)."""
        GeneratorOptions(**options).grids()  # bad options fail before the folder is opened
        return cls(SamPredictor.from_artifacts(folder, backend=backend, precision=precision), **options)

    def __getattr__(self, name: str) -> Any:  # the official's attributes: generator.pred_iou_thresh ...
        if name != "options" and name in {f.name for f in fields(GeneratorOptions)}:
            return getattr(self.options, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @contextmanager
    def _timed(self, part: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[part] = self.timings.get(part, 0.0) + time.perf_counter() - start

    def generate(self, image: np.ndarray, multimask_output: bool = True) -> list[dict[str, Any]]:
        """Masks of everything in an ``HxWx3`` uint8 RGB image: a list of records, as the official (its keys:
        ``segmentation``, ``area``, ``bbox``, ``predicted_iou``, ``point_coords``, ``stability_score``,
        ``crop_box``)."""
        image = check_rgb(image)
        self.timings = {"encoder": 0.0, "decoder": 0.0}
        start = time.perf_counter()
        data = self._generate_masks(image, multimask_output)
        o = self.options
        if o.min_mask_region_area > 0:
            data = mask_filters.remove_small_regions(data, o.min_mask_region_area,
                                                     max(o.box_nms_thresh, o.crop_nms_thresh))
        out = mask_filters.records(data, o.output_mode)
        self.timings["postprocess"] = time.perf_counter() - start - self.timings["encoder"] - self.timings["decoder"]
        return out

    def _generate_masks(self, image: np.ndarray, multimask_output: bool) -> Any:
        import torch
        from segment_anything.utils.amg import generate_crop_boxes
        from torchvision.ops.boxes import batched_nms, box_area

        o = self.options
        orig_size = image.shape[:2]
        crop_boxes, layer_idxs = generate_crop_boxes(orig_size, o.crop_n_layers, o.crop_overlap_ratio)
        data = mask_filters.concat([self._process_crop(image, crop_box, layer_idx, orig_size, multimask_output)
                                    for crop_box, layer_idx in zip(crop_boxes, layer_idxs)])
        if len(crop_boxes) > 1:  # duplicates between crops: prefer masks from smaller crops
            scores = 1 / box_area(data["crop_boxes"])
            keep = batched_nms(data["boxes"].float(), scores, torch.zeros_like(data["boxes"][:, 0]),
                               iou_threshold=o.crop_nms_thresh)
            data.filter(keep)
        data.to_numpy()
        return data

    def _process_crop(self, image: np.ndarray, crop_box: list[int], layer: int, orig_size: tuple[int, int],
                      multimask_output: bool) -> Any:
        import torch
        from segment_anything.utils.amg import uncrop_boxes_xyxy, uncrop_points
        from torchvision.ops.boxes import batched_nms

        o, core = self.options, self.predictor.predictor  # the Predictor under the drop-in
        x0, y0, x1, y1 = crop_box
        crop = np.ascontiguousarray(image[y0:y1, x0:x1, :])
        with self._timed("encoder"):
            self.predictor.set_image(crop)
        points_for_image = self.point_grids[layer] * np.array(crop.shape[:2])[None, ::-1]
        parts = []
        for start in range(0, len(points_for_image), o.points_per_batch):
            points = points_for_image[start : start + o.points_per_batch]
            with self._timed("decoder"):
                low_res, scores = core.decode_prompts(points[:, None, :], np.ones((len(points), 1)),
                                                        multimask_output=multimask_output, hq_token_only=False)
            parts.append(mask_filters.batch_masks(core, points, low_res, scores, o.mask_filter(), crop_box,
                                                  orig_size))
        data = mask_filters.concat(parts)
        self.predictor.reset_image()
        keep = batched_nms(data["boxes"].float(), data["iou_preds"], torch.zeros_like(data["boxes"][:, 0]),
                           iou_threshold=o.box_nms_thresh)
        data.filter(keep)
        data["boxes"] = uncrop_boxes_xyxy(data["boxes"], crop_box)
        data["points"] = uncrop_points(data["points"], crop_box)
        data["crop_boxes"] = torch.tensor(crop_box).repeat(len(data["rles"]), 1)
        return data

