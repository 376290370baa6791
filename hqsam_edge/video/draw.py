"""The annotated frame: each track's mask in its own colour, its box, its id and score, the frame rate.

Drawn with OpenCV, which the package already depends on, at video rate. Why not supervision's annotators
(``MaskAnnotator``, ``BoxAnnotator``, ``LabelAnnotator``), which would fit: supervision requires the
``opencv-python`` distribution, which installs the same ``cv2`` module as our ``opencv-python-headless``
(whichever installs last wins, and removing one breaks the other), pulls the GUI build's libraries onto
servers, and on Jetson shadows JetPack's own OpenCV, the one with the GStreamer backend that CSI cameras need.
The colours are ``apps.overlay.mask_color``'s, as on ``predict``'s overlays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..apps.overlay import RANDOM_WEIGHTS_NOTE, mask_color, scales
from .tracker import TrackedObject

ALPHA = 0.5


def track_color(track_id: int) -> tuple[int, int, int]:
    return tuple(int(c) for c in mask_color(track_id - 1))  # type: ignore[return-value]


def annotate(rgb: np.ndarray, objects: Sequence[TrackedObject], *, fps: float | None = None,
             random_weights: bool = False) -> np.ndarray:
    """A copy of ``rgb`` with the objects' masks blended in, boxes and ``#id score`` labels, and the FPS."""
    import cv2

    out = rgb.astype(np.float32)
    for obj in objects:
        out[obj.mask] = (1 - ALPHA) * out[obj.mask] + ALPHA * np.asarray(track_color(obj.track_id), np.float32)
    canvas = np.ascontiguousarray(out.clip(0, 255).astype(np.uint8))
    width, _, text = scales(rgb.shape)
    scale = text / 30
    thick = max(1, width // 2)
    for obj in objects:
        x0, y0, x1, y1 = (int(round(v)) for v in obj.box)
        colour = track_color(obj.track_id)
        cv2.rectangle(canvas, (x0, y0), (x1 - 1, y1 - 1), colour, width)
        _label(canvas, f"#{obj.track_id} {obj.score:.2f}", (x0, max(y0 - 2, 0)), scale, thick, colour)
    lines = ([f"{fps:.1f} FPS"] if fps is not None else []) + ([RANDOM_WEIGHTS_NOTE] if random_weights else [])
    for i, line in enumerate(lines):
        _label(canvas, line, (2, int((i + 1) * 34 * scale) + 2), scale, thick, (25, 25, 25), top=True)
    return canvas


def _label(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float, thick: int,
           background: tuple[int, int, int], top: bool = False) -> None:
    """White ``text`` on a filled ``background`` box whose bottom left is ``origin``."""
    import cv2

    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    x, y = origin
    y = max(y, h + base)
    cv2.rectangle(canvas, (x, y - h - base), (x + w + 2, y), background, -1)
    cv2.putText(canvas, text, (x + 1, y - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick,
                cv2.LINE_AA)
