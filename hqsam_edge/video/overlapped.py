"""``run_overlapped``: a tracking run on the stream engine, every stage overlapped.

``TrackMode``'s steps map onto ``apps.stream.run_stream``'s three stages::

    reader thread    next frame (decoding, a live source's newest picture), mode.read: the detector, the
                     encoder's input tensor
    calling thread   mode.predict then mode.associate: the segmenter and the tracker, in frame order (a frame's
                     prompts come from the previous frame's association, so the two share one stage)
    writer thread    mode.write: drawing, the video's encoder, the results files

so the decoder, the detector and the video's encoder work while the model does, and the frame rate is the
slowest stage's, not the sum of all. The results are the same as ``mode.run_plain``'s, frame for frame: the
stateful steps see the frames in order in one thread.

A live source gets ``queue_size=1`` by default (``LIVE_QUEUE``): at most two frames wait while the model
works on one, so the latency from capture to result stays within about three model steps however long the run
(``run_stream`` takes a job only when the queue has room; the live source keeps only its newest frame meanwhile
and counts the others as dropped). A file source gets ``FILE_QUEUE`` frames of slack, to ride out a slow read.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..apps.stream import run_stream
from .frames import Frame
from .meter import Meter, TimedFrames, TrackSummary
from .mode import FrameResult, PreparedFrame, TrackMode, close_run

FILE_QUEUE, LIVE_QUEUE = 4, 1


@dataclass(frozen=True)
class _Read:
    """A frame read, when its reading started (``time.monotonic``) and how long it took."""

    prepared: PreparedFrame = field(repr=False)
    started: float
    seconds: float


@dataclass(frozen=True)
class _Tracked:
    """A frame's result with its read record and the seconds of predict and associate."""

    result: FrameResult = field(repr=False)
    read: _Read
    predict: float
    associate: float


class _Stages:
    """``TrackMode`` as a stream mode (``apps.stream.Mode[Frame, _Read, _Tracked]``), timing each step."""

    def __init__(self, mode: TrackMode, frames: TimedFrames) -> None:
        self.mode, self.frames = mode, frames

    def read(self, frame: Frame) -> _Read:
        """In the reader thread, right after ``frames`` gave ``frame``: its arrival's seconds count as reading."""
        started, t0 = time.monotonic(), time.perf_counter()
        prepared = self.mode.read(frame)
        return _Read(prepared, started, self.frames.last + time.perf_counter() - t0)

    def predict(self, frame: Frame, read: _Read) -> _Tracked:
        t0 = time.perf_counter()
        predicted = self.mode.predict(read.prepared)
        t1 = time.perf_counter()
        result = self.mode.associate(predicted)
        return _Tracked(result, read, t1 - t0, time.perf_counter() - t1)


def default_queue(frames: Iterable[Frame]) -> int:
    """``LIVE_QUEUE`` for a live source (``frames.live``), else ``FILE_QUEUE``."""
    return LIVE_QUEUE if getattr(frames, "live", False) else FILE_QUEUE


def run_overlapped(mode: TrackMode, frames: Iterable[Frame], max_frames: int | None = None,
                  results: list[FrameResult] | None = None, *, queue_size: int | None = None,
                  stop: threading.Event | None = None, meter: Meter | None = None) -> TrackSummary:
    """Every frame of ``frames`` (up to ``max_frames``) through ``mode``, the stages overlapped (module doc).

    Arguments as ``mode.run_plain``'s, and: ``queue_size`` frames wait between two stages (None:
    ``default_queue``); ``stop``: set it (from any thread, or a signal handler) to end the run cleanly: no more
    frames are taken, those in flight are tracked and written, and the summary is returned. An error or an
    interruption stops every stage at once; the frames already tracked are written first. The source and the
    outputs are closed in every case, so the video stays playable and the results of the frames written are
    kept."""
    meter = meter or Meter(lambda: int(getattr(frames, "dropped", 0)))
    jobs = TimedFrames(frames if max_frames is None else itertools.islice(frames, max_frames))

    def write(frame: Frame, done: _Tracked) -> None:
        t0 = time.perf_counter()
        mode.write(done.result)
        seconds = time.perf_counter() - t0
        latency = time.monotonic() - (frame.captured_at or done.read.started)
        meter.add(done.read.seconds, done.predict, done.associate, seconds, latency)
        if results is not None:
            results.append(done.result)

    try:
        run_stream(jobs, _Stages(mode, jobs), write, queue_size=queue_size or default_queue(frames), stop=stop)
    finally:
        outputs = close_run(mode, frames)
    return meter.summary(mode.tracker.next_id - 1, mode.decoder_calls, outputs)
