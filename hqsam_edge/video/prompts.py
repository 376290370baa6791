"""What starts and supports the tracks: prompts on one frame, detections read from a file, a detector.

Every kind answers ``detections(frame) -> Detections | None`` for each frame in order (None: nothing is
known about this frame, e.g. between two detector runs; an empty ``Detections``: looked, found nothing).

- ``FirstFramePrompts``: boxes and point groups on frame k (one object each); no detections after that.
- ``DetectionsFile``: per-frame boxes from a MOT Challenge ``det.txt`` or a COCO-style results JSON.
- ``apps.detector.OnnxDetector``: an ONNX detector run every N frames (below ``video``, so that
  ``segment --detector`` uses it on still images too).

``PromptChoice`` is the command line's choice among them (``--box`` / ``--point``, ``--detections``,
``--detector``), checked before the model opens.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..apps.detections import Detections
from ..apps.detector import DetectorSpec, OnnxDetector
from ..errors import DataError, UsageError
from .frames import Frame


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


def parse_point_group(text: str) -> PointGroup:
    """``"x,y[,label][;x,y[,label]...]"`` -> the points of one object (label 1 foreground, 0 background)."""
    from ..apps.files import parse_point

    return PointGroup(tuple(parse_point(p) for p in text.split(";") if p.strip()))


def parse_track_box(text: str) -> tuple[float, float, float, float]:
    """``"x0,y0,x1,y1"`` -> a box with an area (x1 > x0, y1 > y0)."""
    from ..apps.files import parse_box

    x0, y0, x1, y1 = parse_box(text)
    if x1 <= x0 or y1 <= y0:
        raise UsageError(f"a box x0,y0,x1,y1 needs x1 > x0 and y1 > y0; got {text!r}")
    return x0, y0, x1, y1


@dataclass(frozen=True)
class PromptChoice:
    """What starts and supports the tracks, as a user names it: ``boxes`` / ``points`` (strings, on frame
    ``frame``), a ``detections`` file, or a ``detector`` graph with its ``detector_spec``; exactly one kind.
    ``check()`` parses what can be parsed without opening anything; ``open()`` makes the prompter."""

    boxes: tuple[str, ...] = ()
    points: tuple[str, ...] = ()
    detections: str | None = None
    detector: str | None = None
    detector_spec: DetectorSpec = DetectorSpec()
    frame: int = 0

    def check(self) -> FirstFramePrompts | None:
        """The first-frame prompts (None: from a file or a detector); ``UsageError`` unless exactly one kind."""
        kinds = [bool(self.boxes or self.points), self.detections is not None, self.detector is not None]
        if sum(kinds) != 1:
            raise UsageError("give the objects to follow one way: --box / --point on the first frame, "
                             "--detections FILE, or --detector D.onnx")
        if not kinds[0]:
            return None
        return FirstFramePrompts(tuple(parse_track_box(b) for b in self.boxes),
                                 tuple(parse_point_group(p) for p in self.points), self.frame)

    def open(self, providers: Sequence[str] | None = None) -> FirstFramePrompts | DetectionsFile | OnnxDetector:
        """The prompter: first-frame prompts, the detections file read, or the detector loaded (ONNX Runtime on
        ``providers``, default the CPU)."""
        first = self.check()
        if first is not None:
            return first
        if self.detections is not None:
            return DetectionsFile.read(self.detections)
        return OnnxDetector(self.detector, self.detector_spec, providers)  # type: ignore[arg-type]
