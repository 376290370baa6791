"""Synthetic videos with ground truth, and a stand-in segmenter that answers prompts with the true shapes.

Random weights give meaningless masks, so the tracker's own quality (ids kept through crossings and
occlusions) is measured here: shapes in solid colours of ``PALETTE`` move over a grey textured background,
cross, and pass behind one another (a fixed depth order), and each frame's visible masks are known.
``StandInSegmenter`` has the methods of ``Predictor`` that the tracker uses (``set_image``, ``predict_batch``,
``predict_boxes``) and returns, for a box, the visible shape whose box fits the prompt best (SAM's behaviour
on clean scenes), for points the shape under the first foreground point, with noise: the mask's edge grown
or shrunk by a pixel at random, and a noisy score. ``write_hq_ytvis`` writes such videos in HQ-YTVIS's layout.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..apps.detections import Detections
from .frames import Frame
from .tracker import box_iou, mask_box

PALETTE = np.array([[230, 40, 40], [40, 200, 60], [50, 90, 240], [240, 210, 30], [200, 60, 220], [30, 210, 220],
                    [250, 140, 20], [140, 70, 20]], np.uint8)
COLOUR_TOLERANCE = 60  # per channel: a pixel this close to a palette colour is that shape (video codecs blur)


@dataclass(frozen=True)
class Shape:
    """A rectangle or ellipse of ``size`` (w, h) whose centre starts at ``start`` and moves by ``velocity``
    pixels a frame, bouncing off the borders; drawn in ``PALETTE[colour]``; higher ``depth`` is in front."""

    kind: str
    size: tuple[int, int]
    start: tuple[float, float]
    velocity: tuple[float, float]
    colour: int
    depth: int = 0


@dataclass(frozen=True)
class SyntheticVideo:
    """``frames`` pictures of ``height`` x ``width`` with ``shapes``; object id k+1 is ``shapes[k]``."""

    shapes: tuple[Shape, ...]
    height: int = 120
    width: int = 160
    frames: int = 40
    seed: int = 0

    def centre(self, shape: Shape, t: int) -> tuple[float, float]:
        """The centre at frame ``t``, bouncing off the borders (a triangle wave)."""
        out = []
        for p0, v, half, span in zip(shape.start, shape.velocity, (shape.size[0] / 2, shape.size[1] / 2),
                                     (self.width, self.height)):
            lo, hi = half, span - half
            length = max(hi - lo, 1e-6)
            x = (p0 - lo + v * t) % (2 * length)
            out.append(lo + (x if x <= length else 2 * length - x))
        return out[0], out[1]

    def shape_mask(self, shape: Shape, t: int) -> np.ndarray:
        cx, cy = self.centre(shape, t)
        ys, xs = np.mgrid[: self.height, : self.width]
        hw, hh = shape.size[0] / 2, shape.size[1] / 2
        if shape.kind == "ellipse":
            return ((xs + 0.5 - cx) / hw) ** 2 + ((ys + 0.5 - cy) / hh) ** 2 <= 1.0
        return (np.abs(xs + 0.5 - cx) <= hw) & (np.abs(ys + 0.5 - cy) <= hh)

    def render(self, t: int) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """Frame ``t``: the ``HxWx3`` RGB picture and each object's visible mask (id -> ``HxW`` bool)."""
        rng = np.random.default_rng(self.seed * 100003 + t)
        rgb = (100 + rng.integers(-12, 13, (self.height, self.width, 1))).repeat(3, axis=2).astype(np.uint8)
        taken = np.zeros((self.height, self.width), bool)
        visible: dict[int, np.ndarray] = {}
        for k in sorted(range(len(self.shapes)), key=lambda k: -self.shapes[k].depth):  # front to back
            full = self.shape_mask(self.shapes[k], t)
            visible[k + 1] = full & ~taken
            taken |= full
            rgb[visible[k + 1]] = PALETTE[self.shapes[k].colour]
        return rgb, dict(sorted(visible.items()))

    def iter_frames(self, fps: float = 25.0) -> Iterator[Frame]:
        for t in range(self.frames):
            yield Frame(t, t / fps, self.render(t)[0])

    def detections(self, t: int, *, min_area: int = 20, miss: float = 0.0, jitter: float = 0.0,
                   seed: int = 0) -> Detections:
        """Boxes of the objects visible at frame ``t`` (score 0.9, class 1), some missed and jittered."""
        rng = np.random.default_rng(seed * 7919 + t)
        boxes = []
        for mask in self.render(t)[1].values():
            box = mask_box(mask)
            if box is None or mask.sum() < min_area or rng.random() < miss:
                continue
            boxes.append(box + rng.normal(0, jitter, 4) if jitter else box)
        k = len(boxes)
        return Detections(np.asarray(boxes, np.float32).reshape(k, 4), np.full(k, 0.9, np.float32),
                          np.ones(k, np.int64))


def crossing_scene(frames: int = 60, seed: int = 0) -> SyntheticVideo:
    """Four shapes: two that cross head-on (one in front), one that passes wholly behind a large slow one."""
    shapes = (
        Shape("ellipse", (22, 22), (20, 40), (2.5, 0.0), 0, depth=2),
        Shape("rect", (20, 20), (140, 44), (-2.5, 0.0), 1, depth=1),
        Shape("rect", (44, 40), (80, 95), (0.3, 0.0), 2, depth=3),
        Shape("ellipse", (16, 14), (25, 95), (2.0, 0.0), 3, depth=0),
    )
    return SyntheticVideo(shapes, height=128, width=160, frames=frames, seed=seed)


class StandInSegmenter:
    """The true visible shape under each prompt, with noise (see the module's doc). ``noise``: the chance that
    a mask's edge is grown or shrunk by one pixel, and the spread of its score around 0.9."""

    def __init__(self, noise: float = 0.3, seed: int = 0, palette: np.ndarray = PALETTE) -> None:
        self.noise, self.palette = noise, np.asarray(palette, np.int16)
        self.rng = np.random.default_rng(seed)
        self.labels: np.ndarray | None = None
        self.decoder_calls = 0

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        rgb = np.asarray(image, np.int16)
        near = np.abs(rgb[None] - self.palette[:, None, None]).max(axis=3) <= COLOUR_TOLERANCE  # [C,H,W]
        self.labels = np.where(near.any(0), near.argmax(0) + 1, 0)

    def _shape_for_box(self, box: np.ndarray) -> np.ndarray:
        assert self.labels is not None
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        inside = np.unique(self.labels[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)])
        best, fit = None, 0.0
        for label in inside[inside > 0]:
            mask = self.labels == label
            iou = float(box_iou(mask_box(mask), np.asarray(box))[0, 0])
            if iou > fit:
                best, fit = mask, iou
        return best if best is not None else np.zeros(self.labels.shape, bool)

    def _noisy(self, mask: np.ndarray) -> tuple[np.ndarray, float]:
        import cv2

        if mask.any() and self.rng.random() < self.noise:
            op = cv2.dilate if self.rng.random() < 0.5 else cv2.erode
            mask = op(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        score = float(np.clip(0.9 + self.rng.normal(0, self.noise * 0.1), 0, 1)) if mask.any() else 0.05
        return mask, score

    def predict_batch(self, point_coords=None, point_labels=None, boxes=None, mask_input=None,
                      multimask_output=None, hq_token_only=None, return_logits=False, *, resized=False):
        """P prompts -> masks ``[P,1,H,W]`` bool, scores ``[P,1]``, low-res ``[P,1,256,256]`` (as ``Predictor``)."""
        import cv2

        if self.labels is None:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        self.decoder_calls += 1
        prompts: Sequence = boxes if boxes is not None else point_coords
        out, scores = [], []
        for k in range(len(prompts)):
            if boxes is not None:
                mask = self._shape_for_box(np.asarray(boxes[k], np.float64))
            else:
                fg = [p for p, lab in zip(point_coords[k], point_labels[k]) if lab == 1]
                x, y = (int(v) for v in fg[0])
                label = self.labels[min(max(y, 0), self.labels.shape[0] - 1), min(max(x, 0), self.labels.shape[1] - 1)]
                mask = self.labels == label if label else np.zeros(self.labels.shape, bool)
            mask, score = self._noisy(mask)
            out.append(mask)
            scores.append(score)
        masks = np.stack(out)[:, None]
        low = np.stack([cv2.resize(m.astype(np.float32) * 20 - 10, (256, 256)) for m in out])[:, None]
        return masks, np.asarray(scores, np.float32)[:, None], low

    def predict_boxes(self, boxes_xyxy, multimask_output=None, hq_token_only=None, return_logits=False):
        return self.predict_batch(boxes=np.asarray(boxes_xyxy, np.float64).reshape(-1, 4))


def write_hq_ytvis(root: str | Path, videos: Sequence[SyntheticVideo], split: str = "test") -> Path:
    """``videos`` in HQ-YTVIS's layout under ``root``: ``JPEGImages/<video>/<frame:05d>.jpg`` and the YouTube-VIS
    annotation file ``ytvis_hq-<split>.json`` (videos, per-track RLEs with None where hidden, one category).
    Objects with fewer than 20 visible pixels on a frame are absent there. Returns the annotation file."""
    from PIL import Image

    from ..apps.rle import rle_area, rle_encode

    root = Path(root)
    entries, annotations = [], []
    for vid, video in enumerate(videos, 1):
        name = f"synthetic_{vid:03d}"
        (root / "JPEGImages" / name).mkdir(parents=True, exist_ok=True)
        tracks: dict[int, list] = {k + 1: [] for k in range(len(video.shapes))}
        for t in range(video.frames):
            rgb, visible = video.render(t)
            Image.fromarray(rgb).save(root / "JPEGImages" / name / f"{t:05d}.jpg", quality=95)
            for k, mask in visible.items():
                tracks[k].append(rle_encode(mask) if mask.sum() >= 20 else None)
        entries.append({"id": vid, "width": video.width, "height": video.height, "length": video.frames,
                        "file_names": [f"{name}/{t:05d}.jpg" for t in range(video.frames)]})
        for segs in tracks.values():
            annotations.append({"id": len(annotations) + 1, "video_id": vid, "category_id": 1, "iscrowd": 0,
                                "segmentations": segs,
                                "areas": [None if s is None else rle_area(s) for s in segs]})
    path = root / f"ytvis_hq-{split}.json"
    path.write_text(json.dumps({"videos": entries, "annotations": annotations,
                                "categories": [{"id": 1, "name": "shape", "supercategory": "shape"}]}))
    return path
