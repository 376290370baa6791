"""What a tracking run measures as it goes, and the live line that shows it.

Per frame: the seconds of each step (read: the frame's arrival, i.e. decoding or waiting for a camera, then
``TrackMode.read``; predict; associate; write) and the latency from capture to written result; per run: frames per
second and frames a live source dropped. ``Meter`` keeps running sums, maxima and short moving averages only
(nothing grows with the number of frames: a camera may run for days), reports a line through
``hqsam_edge.progress``::

    track 120/300 frames (24.8 FPS; read 9 ms, model 38 ms, track 2 ms, write 11 ms; latency 96 ms; 0 dropped)

(a bar on a terminal, every tenth of the frames in a log; a source of unknown length, a live one, prints the
line every ``LINE_EVERY_S`` seconds instead), and makes the run's ``TrackSummary``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from .. import progress
from .frames import Frame
from .outputs import TrackOutputs

LINE_EVERY_S = 5.0  # a live line this often when the source has no known length
SMOOTHING = 0.1  # weight of the newest frame in the moving averages of the live line


@dataclass
class StageTimes:
    """Seconds spent in each step over a run."""

    read: float = 0.0
    predict: float = 0.0
    associate: float = 0.0
    write: float = 0.0


@dataclass(frozen=True)
class TrackSummary:
    """A run: frames processed, frames a live source dropped, tracks started, wall seconds, seconds per step,
    latency from capture to written result (mean, max), decoder calls, the files written, and the signal that
    ended a live stream (``"SIGINT"`` / ``"SIGTERM"``; None: the source ended, or ``max_frames``)."""

    frames: int
    dropped: int
    tracks: int
    seconds: float
    stages: StageTimes
    latency_mean: float
    latency_max: float
    decoder_calls: int
    outputs: TrackOutputs
    stopped_by: str | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """One line for the command line's output."""
        files = [str(p) for p in (self.outputs.video, self.outputs.results) if p is not None]
        stop = f"; stopped by {self.stopped_by}" if self.stopped_by else ""
        dropped = f", {self.dropped} dropped by the live source" if self.dropped else ""
        return (f"tracked {self.tracks} object(s) through {self.frames} frame(s) in {self.seconds:.1f} s "
                f"({self.fps:.1f} FPS{dropped}); latency mean {1000 * self.latency_mean:.0f} ms, max "
                f"{1000 * self.latency_max:.0f} ms{stop}; wrote {', '.join(files) or 'nothing'}")


class TimedFrames:
    """The frames of ``frames``, and how long the last one took to arrive (``last``, seconds): a file's decoding,
    or the wait for a live source's next frame. Read by the step that runs right after, in the same thread."""

    def __init__(self, frames: Iterable[Frame]) -> None:
        self.frames, self.last = frames, 0.0

    def __iter__(self) -> Iterator[Frame]:
        frames = iter(self.frames)
        while True:
            started = time.perf_counter()
            try:
                frame = next(frames)
            except StopIteration:
                return
            self.last = time.perf_counter() - started
            yield frame


class Meter:
    """Running figures of a run (see the module's doc). ``dropped()``: the source's drop count so far;
    ``bar``: the progress stage to advance (None: no progress)."""

    def __init__(self, dropped: Callable[[], int] = lambda: 0, bar: progress.Stage | None = None) -> None:
        self.dropped, self.bar = dropped, bar
        self.times = StageTimes()
        self.frames = 0
        self.latency_sum = self.latency_max = 0.0
        self.start = time.perf_counter()
        self._avg: dict[str, float] = {}
        self._last: float | None = None
        self._next_line = self.start + LINE_EVERY_S

    def _smooth(self, name: str, value: float) -> float:
        old = self._avg.get(name)
        self._avg[name] = value if old is None else (1 - SMOOTHING) * old + SMOOTHING * value
        return self._avg[name]

    def add(self, read: float, predict: float, associate: float, write: float, latency: float) -> None:
        """One frame written: its steps' seconds and its latency (capture -> written)."""
        t = self.times
        t.read, t.predict, t.associate, t.write = (t.read + read, t.predict + predict, t.associate + associate,
                                                   t.write + write)
        self.frames += 1
        self.latency_sum += latency
        self.latency_max = max(self.latency_max, latency)
        now = time.perf_counter()
        if self._last is not None:
            self._smooth("interval", now - self._last)
        self._last = now
        for name, value in (("read", read), ("predict", predict), ("associate", associate), ("write", write),
                            ("latency", latency)):
            self._smooth(name, value)
        self._report(now)

    def line(self) -> str:
        """The live figures: FPS, each step's and the latency's recent milliseconds, frames dropped."""
        a = self._avg
        interval = a.get("interval")
        fps = f"{1 / interval:.1f} FPS" if interval else "- FPS"

        def ms(name: str) -> str:
            return f"{1000 * a.get(name, 0.0):.0f} ms"

        return (f"{fps}; read {ms('read')}, model {ms('predict')}, track {ms('associate')}, write {ms('write')}; "
                f"latency {ms('latency')}; {self.dropped()} dropped")

    def _report(self, now: float) -> None:
        if self.bar is None:
            return
        self.bar.advance(1, detail=self.line())
        if not self.bar.total and now >= self._next_line:
            progress.note(f"track {self.frames} frames ({self.line()})")
            self._next_line = now + LINE_EVERY_S

    def summary(self, tracks: int, decoder_calls: int, outputs: TrackOutputs,
                stopped_by: str | None = None) -> TrackSummary:
        mean = self.latency_sum / self.frames if self.frames else 0.0
        return TrackSummary(self.frames, int(self.dropped()), tracks, time.perf_counter() - self.start, self.times,
                            mean, self.latency_max, decoder_calls, outputs, stopped_by)
