"""``Frame``: one picture of a video or stream, as every stage of the tracker passes it on."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError


@dataclass(frozen=True)
class Frame:
    """Picture ``index`` of a source (0-based; a live source's indices skip the frames it dropped).

    ``timestamp``: seconds from the start of the video (a file's presentation time; a live source's capture
    time since it opened). ``rgb``: ``HxWx3`` uint8. ``captured_at``: ``time.monotonic()`` when the source
    had the picture, for latency (capture -> result)."""

    index: int
    timestamp: float
    rgb: np.ndarray = field(repr=False)
    captured_at: float = 0.0

    @property
    def size(self) -> tuple[int, int]:
        """(H, W)."""
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])


class SizeGuard:
    """Every frame of a source must have the first frame's size: the tracker's boxes, the video being
    written and the results all assume one size."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.size: tuple[int, int] | None = None

    def check(self, frame: Frame) -> Frame:
        rgb = frame.rgb
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise DataError(f"{self.name}: frame {frame.index} is not an HxWx3 uint8 RGB picture "
                            f"(shape {rgb.shape}, dtype {rgb.dtype})")
        if self.size is None:
            self.size = frame.size
        elif frame.size != self.size:
            raise DataError(f"{self.name}: frame {frame.index} is {frame.size[1]}x{frame.size[0]}, but the stream "
                            f"began at {self.size[1]}x{self.size[0]}; a video must keep one size (re-encode it, "
                            f"or split it where the size changes)")
        return frame
