"""``track``: follow objects through a video or stream with any ``Predictor`` backend, and write the results."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..interrupts import signals_raise
from .frames import Frame
from .mode import Prompter, TrackMode, TrackSummary, run_plain
from .outputs import OutputSpec
from .prompts import FirstFramePrompts
from .sources import FrameSource, SourceSpec, open_source
from .tracker import TrackerSpec


@dataclass(frozen=True)
class TrackSpec:
    """How to run: the tracker's and the outputs' options; ``live``: keep only the newest frame of the source
    (None: cameras and streaming URLs are live, files and sequences are not); ``timeout_s``: a source silent
    this long has stalled; ``max_frames``: stop after this many (None: at the end of the source); ``fps``: the
    annotated video's rate (None: the source's, else 25)."""

    tracker: TrackerSpec = TrackerSpec()
    output: OutputSpec = OutputSpec()
    live: bool | None = None
    timeout_s: float = 10.0
    max_frames: int | None = None
    fps: float | None = None

    def __post_init__(self) -> None:
        if self.max_frames is not None and self.max_frames < 1:
            raise UsageError("max_frames must be at least 1 (or None: the whole source)")


def _source(source: Any, spec: TrackSpec) -> Iterable[Frame]:
    if isinstance(source, (str, Path)):
        return open_source(SourceSpec(str(source), spec.live, spec.timeout_s))
    if isinstance(source, SourceSpec):
        return open_source(source)
    return source  # a FrameSource, or any iterable of Frame records


def _video_fps(frames: Iterable[Frame], spec: TrackSpec) -> float | None:
    """The source's own rate where it is known before the first frame (image sequences, live: None)."""
    if spec.fps is not None:
        return spec.fps
    if isinstance(frames, FrameSource) and frames.fps:
        return frames.fps
    path = getattr(frames, "name", None)
    if path and Path(str(path)).is_file():
        try:
            import av

            with av.open(str(path)) as container:
                rate = container.streams.video[0].average_rate
                return float(rate) if rate else None
        except Exception:  # the source reports its own error, in one line, when it is read
            return None
    return None


def track(predictor: Any, source: str | Path | SourceSpec | FrameSource | Iterable[Frame],
          prompts: FirstFramePrompts | Prompter, out: str | Path | None, spec: TrackSpec = TrackSpec()
          ) -> TrackSummary:
    """Follow objects from ``source`` with ``predictor`` (a ``Predictor`` of any backend, or anything with its
    ``set_image`` / ``predict_boxes`` / ``predict_batch``), started and supported by ``prompts``
    (``FirstFramePrompts``, ``DetectionsFile.read(path)``, ``OnnxDetector(path, DetectorSpec(every=N))``),
    writing ``annotated.mp4``, ``frames.jsonl`` and ``results.json`` (YouTube-VIS) into ``out``.

    Frames run one after another (``mode.run_plain``). SIGINT and SIGTERM stop the run cleanly: the video and
    the results so far are kept, then the interruption is raised on."""
    frames = _source(source, spec)
    with signals_raise():
        mode = TrackMode(predictor, prompts, out, tracker=spec.tracker, output=spec.output,
                         fps=_video_fps(frames, spec))
        return run_plain(mode, frames, spec.max_frames)
