"""``Detections``: a detector's boxes, scores and classes for one picture (a video frame or a still image)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import UsageError


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
