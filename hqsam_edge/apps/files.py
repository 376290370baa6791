"""Prompts from strings, masks and overlays (``overlay``) to files: what ``hqsam-edge predict`` needs.

Files are written to a temporary name beside the target and renamed, so a
failure never leaves a half-written file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..atomic import atomic_write
from ..data.transforms import load_image
from ..errors import UsageError
from ..runtime.predictor import Predictor, best_masks
from .overlay import everything_overlay, prompt_overlay


def _numbers(text: str, what: str, example: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        raise UsageError(f"cannot read {what} {text!r}: expected numbers like {example}") from None
    if not all(np.isfinite(values)):
        raise UsageError(f"{what} {text!r} must hold finite numbers")
    return values


def parse_box(text: str) -> list[float]:
    """``"x0,y0,x1,y1"`` -> 4 floats."""
    values = _numbers(text, "box", "10,20,300,400")
    if len(values) != 4:
        raise UsageError(f"a box takes 4 numbers x0,y0,x1,y1; got {text!r}")
    return values


def parse_point(text: str) -> tuple[float, float, int]:
    """``"x,y"`` (foreground) or ``"x,y,label"`` with label 1 (foreground) or 0 (background)."""
    values = _numbers(text, "point", "120,80 or 120,80,0")
    if len(values) not in (2, 3):
        raise UsageError(f"a point takes x,y or x,y,label; got {text!r}")
    label = int(values[2]) if len(values) == 3 else 1
    if len(values) == 3 and values[2] not in (0.0, 1.0):
        raise UsageError(f"a point label is 1 (foreground) or 0 (background); got {text!r}")
    return values[0], values[1], label


def parse_prompts(
    boxes: Sequence[str], points: Sequence[str]
) -> tuple[list[list[float]], list[tuple[float, float, int]]]:
    """``--box`` / ``--point`` strings -> boxes and points: several boxes (one mask each), or points with
    at most one box (one mask)."""
    box_list = [parse_box(b) for b in boxes]
    point_list = [parse_point(p) for p in points]
    if not box_list and not point_list:
        raise UsageError("give at least one prompt: --box x0,y0,x1,y1 or --point x,y[,label]")
    if point_list and len(box_list) > 1:
        raise UsageError("points combine with at most one box; use several --box alone for one mask per box")
    return box_list, point_list


def check_predict_options(boxes: Sequence[str], points: Sequence[str], out, everything: bool, options,
                          overlay=None) -> None:
    """``hqsam-edge predict``'s options that cannot go together, refused before the model is opened."""
    from .generator_options import GeneratorOptions

    if everything:
        if boxes or points:
            raise UsageError("--everything segments the whole image: drop --box / --point")
        options.grids()
        _check_everything_outputs(out, overlay)
    elif options != GeneratorOptions():
        raise UsageError("--points-per-side, --pred-iou-thresh ... apply to --everything only")
    elif out is None:
        raise UsageError("give --out mask.png")


def _check_everything_outputs(out, overlay) -> None:
    if out is None and overlay is None:
        raise UsageError("--everything writes --out (a label PNG) and/or --overlay (the masks in colour): give one")


def check_points_inside(points: Sequence[tuple[float, float, int]], size: tuple[int, int]) -> None:
    """A point typed on the command line must lie on the image (the Python API, as SamPredictor, takes any)."""
    h, w = size
    for x, y, _ in points:
        if not (0 <= x <= w and 0 <= y <= h):
            raise UsageError(f"point ({x:g}, {y:g}) is outside the {w}x{h} image")


def _save_png(path: str | Path, array: np.ndarray) -> Path:
    return atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


def label_image(masks: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """K masks ``HxW`` (``shape``) -> one map: 0 where none, k + 1 where mask k is (later masks on top)."""
    labels = np.zeros(shape, np.uint8 if len(masks) < 256 else np.uint16)
    for k, mask in enumerate(masks):
        labels[mask] = k + 1
    return labels


@dataclass(frozen=True)
class PredictResult:
    masks: np.ndarray  # [K,H,W] bool
    scores: np.ndarray  # [K]
    out: Path
    overlay: Path | None

    def summary(self) -> str:
        areas = ", ".join(f"{int(m.sum())} px (score {s:.3f})" for m, s in zip(self.masks, self.scores))
        extra = f", overlay {self.overlay}" if self.overlay else ""
        return f"wrote {self.out}{extra}: {len(self.masks)} mask(s): {areas}"


def predict_to_files(
    predictor: Predictor,
    image_path: str | Path,
    *,
    boxes: Sequence[str] = (),
    points: Sequence[str] = (),
    out: str | Path,
    overlay: str | Path | None = None,
    multimask_output: bool | None = None,
) -> PredictResult:
    """Segment one image file from CLI-style prompt strings and write the mask PNG (0/255, union of
    the masks) and optionally an overlay (``overlay.prompt_overlay``: the masks in colour, the prompts, a
    legend of scores, a warning for random weights). Several boxes are decoded in one call."""
    box_list, point_list = parse_prompts(boxes, points)
    image = load_image(str(image_path))
    check_points_inside(point_list, image.shape[:2])
    predictor.set_image(image)
    coords = labels = None
    if point_list:
        coords = np.array([[(x, y) for x, y, _ in point_list]])
        labels = np.array([[lab for _, _, lab in point_list]])
    box_arr = np.array(box_list) if box_list else None
    masks, scores, _ = predictor.predict_batch(coords, labels, box_arr, multimask_output=multimask_output)
    masks, scores = best_masks(masks, scores)
    out_path = _save_png(out, (masks.any(axis=0) * 255).astype(np.uint8))
    overlay_path = None
    if overlay:
        drawn = prompt_overlay(image, masks, scores, boxes=box_arr, points=None if coords is None else coords[0],
                               point_labels=None if labels is None else labels[0],
                               random_weights=predictor.info.random_weights)
        overlay_path = _save_png(overlay, drawn)
    return PredictResult(masks, scores, out_path, overlay_path)


@dataclass(frozen=True)
class EverythingResult:
    records: list  # the generator's records (binary masks), largest first
    timings: dict[str, float]
    out: Path | None
    overlay: Path | None

    def summary(self) -> str:
        written = ", ".join(str(p) for p in (self.out, self.overlay) if p is not None)
        split = ", ".join(f"{k} {v:.2f} s" for k, v in self.timings.items())
        return f"wrote {written}: {len(self.records)} mask(s) ({split})"


def everything_to_files(predictor: Predictor, image_path: str | Path, options, *, out: str | Path | None = None,
                        overlay: str | Path | None = None) -> EverythingResult:
    """Segment everything in one image file (``options``: ``GeneratorOptions``) and write ``out`` (a label PNG:
    0 where no mask, k for the k-th largest mask on top of larger ones) and/or ``overlay`` (every mask in its own
    colour, smaller ones over larger: ``overlay.everything_overlay``)."""
    import dataclasses

    from .mask_generator import SamAutomaticMaskGenerator

    _check_everything_outputs(out, overlay)
    generator = SamAutomaticMaskGenerator.from_options(predictor, dataclasses.replace(options,
                                                                                      output_mode="binary_mask"))
    image = load_image(str(image_path))
    records = sorted(generator.generate(image), key=lambda r: -r["area"])
    masks = [r["segmentation"] for r in records]  # the records' own arrays: no second copy of every mask
    out_path = _save_png(out, label_image(masks, image.shape[:2])) if out else None
    overlay_path = None
    if overlay:
        drawn = everything_overlay(image, masks, random_weights=predictor.info.random_weights)
        overlay_path = _save_png(overlay, drawn)
    return EverythingResult(records, dict(generator.timings), out_path, overlay_path)
