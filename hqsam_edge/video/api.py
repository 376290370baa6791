"""``track``: follow objects through a video or stream with any ``Predictor`` backend, and write the results."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import progress
from ..atomic import note_kept
from ..errors import UsageError
from ..interrupts import SIGNALS, Interrupted, signals_raise
from .frames import Frame
from .meter import Meter, TrackSummary
from .mode import Prompter, TrackMode, run_plain
from .outputs import OutputSpec
from .overlapped import run_overlapped
from .prompts import FirstFramePrompts
from .sources import (
    FrameSource,
    ImageSequenceSource,
    PyAVFileSource,
    SourceSpec,
    open_source,
)
from .tracker import TrackerSpec


@dataclass(frozen=True)
class TrackSpec:
    """How to run: the tracker's and the outputs' options; ``live``: keep only the newest frame of the source
    (None: cameras and streaming URLs are live, files and sequences are not); ``timeout_s``: a source silent
    this long has stalled; ``max_frames``: stop after this many (None: at the end of the source); ``fps``: the
    annotated video's rate (None: the source's, else 25); ``overlapped``: overlap reading, the model and writing
    (``overlapped.run_overlapped``; False: one after another, ``mode.run_plain``, the baseline); ``queue_size``:
    frames waiting between two stages (None: 1 for a live source, 4 otherwise); ``show``: also show the
    annotated frames in a window (``window.Window``)."""

    tracker: TrackerSpec = TrackerSpec()
    output: OutputSpec = OutputSpec()
    live: bool | None = None
    timeout_s: float = 10.0
    max_frames: int | None = None
    fps: float | None = None
    overlapped: bool = True
    queue_size: int | None = None
    show: bool = False

    def __post_init__(self) -> None:
        if self.max_frames is not None and self.max_frames < 1:
            raise UsageError("max_frames must be at least 1 (or None: the whole source)")
        if self.queue_size is not None and self.queue_size < 1:
            raise UsageError("queue_size must be at least 1 (or None: 1 for a live source, 4 otherwise)")


def _source(source: Any, spec: TrackSpec) -> Iterable[Frame]:
    if isinstance(source, (str, Path)):
        return open_source(SourceSpec(str(source), spec.live, spec.timeout_s))
    if isinstance(source, SourceSpec):
        return open_source(source)
    return source  # a FrameSource, or any iterable of Frame records


def _probe(frames: Iterable[Frame], spec: TrackSpec) -> tuple[float | None, int | None]:
    """The source's own frame rate and length where they are known before the first frame (a video file's
    header, a sequence's pictures; live: None), for the video's rate and the progress bar."""
    fps = spec.fps if spec.fps is not None else (frames.fps or None) if isinstance(frames, FrameSource) else None
    length = len(frames.paths) if isinstance(frames, ImageSequenceSource) else None
    if isinstance(frames, PyAVFileSource) and Path(frames.name).is_file():
        try:
            import av

            with av.open(frames.name) as container:
                stream = container.streams.video[0]
                fps = fps or (float(stream.average_rate) if stream.average_rate else None)
                length = int(stream.frames) or None
        except Exception:  # the source reports its own error, in one line, when it is read
            pass
    if spec.max_frames is not None:
        length = spec.max_frames if length is None else min(length, spec.max_frames)
    return fps, length


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[list[int]]:
    """Inside the block the first SIGINT / SIGTERM sets ``stop`` (and is listed in what the block yields); a
    second one raises ``Interrupted`` (the clean end takes too long). Off the main thread nothing changes."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def handler(signum: int, frame: object) -> None:
        if caught:
            raise Interrupted(signum)
        caught.append(signum)
        stop.set()

    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, handler)
    try:
        yield caught
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def track(predictor: Any, source: str | Path | SourceSpec | FrameSource | Iterable[Frame],
          prompts: FirstFramePrompts | Prompter, out: str | Path | None, spec: TrackSpec = TrackSpec(), *,
          stop: threading.Event | None = None) -> TrackSummary:
    """Follow objects from ``source`` with ``predictor`` (a ``Predictor`` of any backend, or anything with its
    ``set_image`` / ``predict_boxes`` / ``predict_batch``), started and supported by ``prompts``
    (``FirstFramePrompts``, ``DetectionsFile.read(path)``, ``OnnxDetector(path, DetectorSpec(every=N))``),
    writing ``annotated.mp4``, ``frames.jsonl`` and ``results.json`` (YouTube-VIS) into ``out``.

    Reading, the model and writing overlap (``overlapped.run_overlapped``; ``spec.overlapped=False``: one after
    another, ``mode.run_plain``). Progress (FPS, each stage's milliseconds, latency, drops) goes to
    ``hqsam_edge.progress``. ``stop``: set it from another thread to end the run cleanly.

    How a run ends on a signal:

    - a live source (a camera, a stream): SIGINT (Ctrl-C) and SIGTERM are the normal way to end it: no more
      frames are taken, those in flight are written, the video is closed playable, the results are written,
      and the summary is returned (``stopped_by``); the command line exits 0. A second signal while it ends
      raises ``Interrupted`` (the files are closed all the same).
    - a file or an image sequence: the signal raises ``Interrupted`` once the files are closed (the video
      playable, the results of the frames done kept); the command line exits 130 (SIGINT) or 143 (SIGTERM),
      because the source was not processed to its end: a script must not take the partial results for a
      finished run (unlike a live stream, a file has an end that the run did not reach).
    """
    frames = _source(source, spec)
    live = bool(getattr(frames, "live", False))
    stop = stop or threading.Event()
    fps, length = _probe(frames, spec)
    viewer = None
    if spec.show:
        from .window import Window

        viewer = Window(f"hqsam-edge track {getattr(frames, 'name', '')}".strip(), stop)
    signals = stop_on_signals(stop) if live else signals_raise()
    try:
        with signals as caught, progress.stage("track", total=length, unit="frame") as bar:
            mode = TrackMode(predictor, prompts, out, tracker=spec.tracker, output=spec.output, fps=fps,
                             viewer=viewer)
            meter = Meter(lambda: int(getattr(frames, "dropped", 0)), bar)
            if spec.overlapped:
                summary = run_overlapped(mode, frames, spec.max_frames, queue_size=spec.queue_size, stop=stop,
                                        meter=meter)
            else:
                summary = run_plain(mode, frames, spec.max_frames, meter=meter, stop=stop)
    except BaseException:
        if out is not None:
            note_kept(f"kept the annotated video and the results of the frames tracked in {out}")
        raise
    finally:
        if viewer is not None:
            viewer.close()
    if caught:
        summary = replace(summary, stopped_by=signal.Signals(caught[0]).name)
    return summary
