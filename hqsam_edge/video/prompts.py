"""What starts and supports the tracks: prompts on one frame, detections read from a file, a detector.

Every kind answers ``detections(frame) -> Detections | None`` for each frame in order (None: nothing is
known about this frame, e.g. between two detector runs; an empty ``Detections``: looked, found nothing).

- ``FirstFramePrompts``: boxes and point groups on frame k (one object each); no detections after that.
- ``DetectionsFile``: per-frame boxes from a MOT Challenge ``det.txt`` or a COCO-style results JSON.
- ``detector.OnnxDetector`` (in its own module): an ONNX detector run every N frames.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError, UsageError
from .frames import Frame


@dataclass(frozen=True)
class Detections:
    """K boxes ``[K,4]`` (x0, y0, x1, y1 pixels of the frame), their scores ``[K]`` and class ids ``[K]``."""

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    classes: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))

    def __post_init__(self) -> None:
        k = len(self.boxes)
        if np.shape(self.boxes) != (k, 4) or np.shape(self.scores) != (k,) or np.shape(self.classes) != (k,):
            raise UsageError(f"detections need boxes [K,4], scores [K] and classes [K]; got {np.shape(self.boxes)}, "
                             f"{np.shape(self.scores)}, {np.shape(self.classes)}")

    def __len__(self) -> int:
        return len(self.boxes)

    def select(self, keep: np.ndarray) -> Detections:
        return Detections(self.boxes[keep], self.scores[keep], self.classes[keep])

    def filtered(self, min_score: float = 0.0, classes: Sequence[int] | None = None) -> Detections:
        """Those scoring at least ``min_score`` (of ``classes`` only, if given), with a non-empty box."""
        boxes = self.boxes
        keep = (self.scores >= min_score) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        if classes is not None:
            keep &= np.isin(self.classes, list(classes))
        return self.select(keep)


@dataclass(frozen=True)
class PointGroup:
    """The points of one object: ``(x, y, label)`` each, label 1 foreground, 0 background."""

    points: tuple[tuple[float, float, int], ...]

    def __post_init__(self) -> None:
        if not self.points or any(len(p) != 3 or p[2] not in (0, 1) for p in self.points):
            raise UsageError("a point prompt is (x, y, label) with label 1 (foreground) or 0 (background)")
        if not any(p[2] == 1 for p in self.points):
            raise UsageError("each point group needs at least one foreground point (label 1)")


@dataclass(frozen=True)
class FirstFramePrompts:
    """Objects to follow from frame ``frame`` on: one per box (x0, y0, x1, y1) and one per point group."""

    boxes: tuple[tuple[float, float, float, float], ...] = ()
    points: tuple[PointGroup, ...] = ()
    frame: int = 0
    category: int = 1

    def __post_init__(self) -> None:
        if not self.boxes and not self.points:
            raise UsageError("give at least one box or point group to follow")
        if self.frame < 0:
            raise UsageError("the prompts' frame index must be 0 or more")

    def detections(self, frame: Frame) -> Detections | None:
        return None  # the tracker reads ``boxes`` / ``points`` itself on ``frame``


@dataclass(frozen=True)
class DetectionsFile:
    """Per-frame detections read from ``path`` (frames 0-based):

    - MOT Challenge ``det.txt`` (any ``.txt``): ``frame,id,x,y,w,h,score[,...]`` with 1-based frames;
    - COCO-style results JSON (``.json``): a list of ``{"image_id": frame, "bbox": [x, y, w, h], "score": s,
      "category_id": c}``, ``image_id`` (or ``"frame"``) the 0-based frame index.

    Frames the file does not name get an empty ``Detections`` (looked, found nothing)."""

    path: Path
    by_frame: dict[int, Detections]

    @classmethod
    def read(cls, path: str | Path) -> DetectionsFile:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"no detections file at {path}")
        rows = _read_json(path) if path.suffix.lower() == ".json" else _read_mot(path)
        if not rows:
            raise DataError(f"{path} holds no detections: give a file with at least one box")
        return cls(path, _group(rows))

    def detections(self, frame: Frame) -> Detections | None:
        return self.by_frame.get(frame.index, Detections())


def _read_mot(path: Path) -> list[tuple[int, float, float, float, float, float, int]]:
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.replace(" ", "").split(",")
        try:
            f, x, y, w, h, s = int(float(parts[0])), *map(float, parts[2:7])
        except (ValueError, IndexError):
            raise DataError(f"{path}:{n} is not a MOT Challenge detection line (frame,id,x,y,w,h,score,...): "
                            f"{line[:60]!r}") from None
        if f < 1:
            raise DataError(f"{path}:{n}: MOT frames count from 1, not {f}")
        rows.append((f - 1, x, y, x + w, y + h, s, 1))
    return rows


def _read_json(path: Path) -> list[tuple[int, float, float, float, float, float, int]]:
    try:
        data = json.loads(path.read_text())
        rows = []
        for d in data:
            x, y, w, h = (float(v) for v in d["bbox"])
            frame = int(d["frame"] if "frame" in d else d["image_id"])
            rows.append((frame, x, y, x + w, y + h, float(d.get("score", 1.0)), int(d.get("category_id", 1))))
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path} is not a COCO-style detections list ([{{'image_id': frame, 'bbox': [x, y, w, h], "
                        f"'score': s, 'category_id': c}}, ...]): {exc}") from None
    return rows


def _group(rows: list[tuple[int, float, float, float, float, float, int]]) -> dict[int, Detections]:
    table = np.asarray(rows, np.float64)
    out = {}
    for f in np.unique(table[:, 0]).astype(int):
        part = table[table[:, 0] == f]
        out[int(f)] = Detections(part[:, 1:5].astype(np.float32), part[:, 5].astype(np.float32),
                                 part[:, 6].astype(np.int64))
    return out
