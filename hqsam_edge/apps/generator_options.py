"""The everything mode's options: ``segment_anything_hq``'s ``SamAutomaticMaskGenerator`` arguments and defaults,
one frozen group, checked once (``check_options``).

Light on purpose (numpy is imported inside ``grids``): the command line builds its ``--points-per-side`` ...
options from these fields (their ``metadata["help"]``) when it starts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..inputs import require_choice

if TYPE_CHECKING:
    import numpy as np

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")


def _opt(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help}, **kw)


@dataclass(frozen=True)
class GeneratorOptions:
    """The official generator's options and defaults (see its docstring), and ``low_res_stability`` (off: the
    official answer; on: the stability score from the low-res logits, faster, see ``mask_filters``)."""

    points_per_side: int | None = _opt(32, "Points along each side of the image: a grid of N x N one-point prompts.")
    points_per_batch: int = _opt(64, "Points decoded in one call (more calls where an engine profile allows fewer).")
    pred_iou_thresh: float = _opt(0.88, "Keep masks whose predicted IoU exceeds this (0: keep all).")
    stability_score_thresh: float = _opt(0.95, "Keep masks whose stability score reaches this (0: keep all).")
    stability_score_offset: float = _opt(1.0, "Logit offset of the stability score (masks at +/- this).")
    box_nms_thresh: float = _opt(0.7, "Box IoU above which duplicate masks in one crop are removed.")
    crop_n_layers: int = _opt(0, "Also segment crops: layer i has (2^i)^2 crops.")
    crop_nms_thresh: float = _opt(0.7, "Box IoU above which duplicates between crops are removed.")
    crop_overlap_ratio: float = _opt(512 / 1500, "Overlap of the first crop layer's crops, as a share of the image.")
    crop_n_points_downscale_factor: int = _opt(1, "Points per side in crop layer i: divided by this^i.")
    point_grids: Sequence[np.ndarray] | None = _opt(None, "Explicit point grids, one Nx2 array in [0, 1] per layer.",
                                                    compare=False)
    min_mask_region_area: int = _opt(0, "Remove holes and islands smaller than this many pixels (needs OpenCV).")
    output_mode: str = _opt("binary_mask", "binary_mask, uncompressed_rle or coco_rle.")
    low_res_stability: bool = _opt(False, "Faster, approximate: the stability score from the 256x256 logits "
                                          "(not the official answer).")

    def mask_filter(self):
        from .mask_filters import MaskFilter

        return MaskFilter(self.pred_iou_thresh, self.stability_score_thresh, self.stability_score_offset,
                          self.low_res_stability)

    def grids(self) -> list[np.ndarray]:
        """The point grid of each crop layer (``[N,2]``, normalised to the crop), checked: ``UsageError`` else."""
        import numpy as np

        check_options(self)
        if self.point_grids is None:
            from segment_anything.utils.amg import build_all_layer_point_grids

            grids = build_all_layer_point_grids(self.points_per_side, self.crop_n_layers,
                                                self.crop_n_points_downscale_factor)
        else:
            grids = [np.asarray(g, dtype=np.float64) for g in self.point_grids]
        for layer, grid in enumerate(grids[: self.crop_n_layers + 1]):
            if grid.ndim != 2 or grid.shape[1] != 2 or len(grid) == 0:
                raise UsageError(f"point grid of crop layer {layer} must be an Nx2 array of (x, y) points in [0, 1] "
                                 f"with N >= 1; got shape {list(grid.shape)}")
            if not np.all(np.isfinite(grid)) or grid.min() < 0 or grid.max() > 1:
                raise UsageError(f"point grid of crop layer {layer} must hold finite (x, y) in [0, 1] (normalised to "
                                 "the crop), not NaN or pixels")
        return grids

    def describe(self) -> str:
        """One line of the options that are not the defaults (``point_grids`` by its shapes)."""
        default = GeneratorOptions()
        parts = [f"{f.name}={getattr(self, f.name)}" for f in fields(self)
                 if f.name != "point_grids" and getattr(self, f.name) != getattr(default, f.name)]
        if self.point_grids is not None:
            parts.append("point_grids=" + "+".join(str(len(g)) for g in self.point_grids))
        return " ".join(parts) or "defaults"


def check_options(o: GeneratorOptions) -> None:
    """Options that cannot make masks: one clear ``UsageError`` (where the official asserts or fails later)."""
    if (o.points_per_side is None) == (o.point_grids is None):
        raise UsageError("give exactly one of points_per_side or point_grids")
    if o.points_per_side is not None and (not isinstance(o.points_per_side, int) or o.points_per_side < 1):
        raise UsageError(f"points_per_side must be a whole number of at least 1 (a grid of 0 points makes no "
                         f"masks), not {o.points_per_side!r}")
    for name in ("points_per_batch", "crop_n_points_downscale_factor"):
        if not isinstance(getattr(o, name), int) or getattr(o, name) < 1:
            raise UsageError(f"{name} must be a whole number of at least 1, not {getattr(o, name)!r}")
    if not isinstance(o.crop_n_layers, int) or o.crop_n_layers < 0:
        raise UsageError(f"crop_n_layers must be 0 or more, not {o.crop_n_layers!r}")
    if o.point_grids is not None and len(o.point_grids) < o.crop_n_layers + 1:
        raise UsageError(f"point_grids has {len(o.point_grids)} grid(s), but crop_n_layers={o.crop_n_layers} needs "
                         f"one per layer: {o.crop_n_layers + 1}")
    if o.points_per_side is not None and o.points_per_side // o.crop_n_points_downscale_factor ** o.crop_n_layers < 1:
        raise UsageError(f"points_per_side={o.points_per_side} leaves crop layer {o.crop_n_layers} no points with "
                         f"crop_n_points_downscale_factor={o.crop_n_points_downscale_factor}")
    for f in fields(o):
        value = getattr(o, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"{f.name} must be a finite number, not {value}")
    require_choice(o.output_mode, OUTPUT_MODES, "output_mode")
    if o.min_mask_region_area < 0:
        raise UsageError(f"min_mask_region_area must be 0 or more, not {o.min_mask_region_area}")
    if o.min_mask_region_area > 0:
        try:
            import cv2  # noqa: F401
        except ImportError:
            raise UsageError("min_mask_region_area > 0 needs OpenCV: pip install opencv-python-headless") from None
