"""Tracking as per-frame steps, and ``run_plain``: the steps one after another, frame by frame.

``TrackMode`` splits a frame's work where the stream engine can overlap it:

- ``read(frame)``: the frame's detections (a file's, or the detector's) and the encoder's input tensor
  (resize, normalise, pad), so that this work overlaps the model; any order, any thread;
- ``predict(item)``: the segmenter (``set_image`` / ``set_image_tensor``, then one decoder call for all
  prompts of the frame); ``associate(item)``: the tracker's update. A frame's prompts come from the previous
  frame's association, so ``predict`` and ``associate`` run in frame order, in one stage, one after the other;
- ``write(result)``: the annotated frame into the video, the frame's RLEs into the results; in frame order.

``overlapped.run_overlapped`` runs the steps overlapped on the stream engine (what ``track`` does); ``run_plain``
here runs them one after another, the baseline it is measured against, with the same results.

The segmenter is anything with ``Predictor``'s ``set_image``, ``predict_boxes`` and ``predict_batch`` (any
backend; ``synthetic.StandInSegmenter`` in tests).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..runtime.predictor import best_masks
from .frames import Frame
from .meter import Meter, TimedFrames, TrackSummary
from .outputs import VIDEO_NAME, OutputSpec, ResultsSink, TrackOutputs, VideoSink
from .prompts import Detections, FirstFramePrompts
from .tracker import PromptPlan, TrackedObject, Tracker, TrackerSpec


class Prompter(Protocol):
    def detections(self, frame: Frame) -> Detections | None: ...


@dataclass(frozen=True)
class PreparedFrame:
    """What ``read`` made of a frame: its detections and, for a ``Predictor``, the encoder's input."""

    frame: Frame
    detections: Detections | None
    tensor: np.ndarray | None = field(default=None, repr=False)
    input_size: tuple[int, int] | None = None


@dataclass(frozen=True)
class Predicted:
    """The segmenter's answer for a frame: one mask ``[P,H,W]``, score ``[P]`` and low-res logits
    ``[P,1,256,256]`` per prompt of ``plan`` (None: the frame that starts the tracks from first-frame
    prompts), and whether it starts them."""

    prepared: PreparedFrame
    plan: PromptPlan | None
    masks: np.ndarray = field(repr=False)
    scores: np.ndarray
    low_res: np.ndarray | None = field(default=None, repr=False)
    starts: bool = False


@dataclass(frozen=True)
class FrameResult:
    """A frame and its tracked objects."""

    frame: Frame
    objects: tuple[TrackedObject, ...]


class TrackMode:
    """The per-frame steps (see the module's doc) for ``segmenter``, ``prompts`` and an output folder ``out``
    (None: nothing is written, the results are only returned); ``viewer``: also given each annotated frame
    (``window.Window``)."""

    def __init__(self, segmenter: Any, prompts: FirstFramePrompts | Prompter, out: str | Path | None, *,
                 tracker: TrackerSpec = TrackerSpec(), output: OutputSpec = OutputSpec(), fps: float | None = None,
                 video_id: int = 1, viewer: Callable[[np.ndarray], None] | None = None) -> None:
        self.segmenter, self.prompts, self.viewer = segmenter, prompts, viewer
        self.tracker = Tracker(tracker)
        self.first = prompts if isinstance(prompts, FirstFramePrompts) else None
        self.started = self.first is None
        info = getattr(segmenter, "info", None)
        self.image_size = getattr(info, "image_size", None) if hasattr(segmenter, "set_image_tensor") else None
        self.random_weights = bool(getattr(info, "random_weights", False))
        self.out = None if out is None else Path(out)
        self.video: VideoSink | None = None
        self.results: ResultsSink | None = None
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            self.results = ResultsSink(self.out, video_id)
            if output.video:
                self.video = VideoSink(self.out / VIDEO_NAME, fps or 25.0, output.encoder, output.crf)
        self._last_write: float | None = None
        self.fps: float | None = None
        self.decoder_calls = 0

    # -- read stage --------------------------------------------------------------------------------------------
    def read(self, frame: Frame) -> PreparedFrame:
        detections = None if self.first is not None else self.prompts.detections(frame)
        if self.image_size is None:
            return PreparedFrame(frame, detections)
        from ..data.transforms import preprocess_image

        tensor, input_size = preprocess_image(frame.rgb, self.image_size)
        return PreparedFrame(frame, detections, tensor, input_size)

    # -- model stage (in frame order) ---------------------------------------------------------------------------
    def _set_image(self, item: PreparedFrame) -> None:
        if item.tensor is not None:
            self.segmenter.set_image_tensor(item.tensor, item.frame.size, item.input_size)
        else:
            self.segmenter.set_image(item.frame.rgb)

    def _decode(self, boxes: np.ndarray | None = None, mask_input: np.ndarray | None = None, points=None):
        """One decoder call -> one mask ``[P,H,W]``, score ``[P]`` and low-res ``[P,1,256,256]`` per prompt."""
        self.decoder_calls += 1
        if points is not None:
            masks, scores, low = self.segmenter.predict_batch(point_coords=points[0], point_labels=points[1],
                                                              multimask_output=False)
        elif mask_input is not None:
            masks, scores, low = self.segmenter.predict_batch(boxes=boxes, mask_input=mask_input,
                                                              multimask_output=False)
        else:
            masks, scores, low = self.segmenter.predict_boxes(boxes, multimask_output=False)
        picked, best = best_masks(masks, scores)
        return picked, best, best_masks(low, scores)[0][:, None]

    def _start(self, item: PreparedFrame) -> Predicted:
        """The first-frame prompts: boxes in one decoder call, point groups (padded to one length) in another."""
        first = self.first
        assert first is not None
        self._set_image(item)
        parts = []
        if first.boxes:
            parts.append(self._decode(boxes=np.asarray(first.boxes, np.float64)))
        if first.points:
            n = max(len(g.points) for g in first.points)
            coords = np.zeros((len(first.points), n, 2))
            labels = np.full((len(first.points), n), -1.0)
            for k, group in enumerate(first.points):
                coords[k, : len(group.points)] = [p[:2] for p in group.points]
                labels[k, : len(group.points)] = [p[2] for p in group.points]
            parts.append(self._decode(points=(coords, labels)))
        masks, scores, low = (np.concatenate(p) for p in zip(*parts))
        self.started = True
        return Predicted(item, None, masks, scores, low, starts=True)

    def predict(self, item: PreparedFrame) -> Predicted:
        """The segmenter's masks for every prompt of the frame (see the module's doc for the order)."""
        if not self.started and self.first is not None and item.frame.index >= self.first.frame:
            return self._start(item)
        plan = self.tracker.plan(item.frame.size, item.detections)
        h, w = item.frame.size
        if not len(plan.boxes):
            return Predicted(item, plan, np.zeros((0, h, w), bool), np.zeros(0, np.float32))
        self._set_image(item)
        n = len(plan.track_ids)
        if plan.mask_input is None:
            masks, scores, low = self._decode(boxes=plan.boxes)
        else:  # has_mask_input is one flag per call: the tracks' rows with their logits, the detections' without
            parts = [self._decode(boxes=plan.boxes[:n], mask_input=plan.mask_input)]
            if len(plan.boxes) > n:
                parts.append(self._decode(boxes=plan.boxes[n:]))
            masks, scores, low = (np.concatenate(p) for p in zip(*parts))
        return Predicted(item, plan, masks, scores, low)

    def associate(self, item: Predicted) -> FrameResult:
        """The tracker's update from the frame's masks (in frame order, right after ``predict``)."""
        if item.starts:
            objects = self.tracker.start(item.masks, item.scores, item.low_res,
                                         self.first.category if self.first else 1)
        else:  # with no prompt at all too: tracks that left the frame coast on, or are lost
            objects = self.tracker.update(item.plan, item.masks, item.scores, item.low_res)  # type: ignore[arg-type]
        return FrameResult(item.prepared.frame, tuple(objects))

    # -- write stage (in frame order) ---------------------------------------------------------------------------
    def write(self, result: FrameResult) -> None:
        now = time.perf_counter()
        if self._last_write is not None:
            rate = 1.0 / max(now - self._last_write, 1e-6)
            self.fps = rate if self.fps is None else 0.9 * self.fps + 0.1 * rate
        self._last_write = now
        if self.video is not None or self.viewer is not None:
            from .draw import annotate

            picture = annotate(result.frame.rgb, result.objects, fps=self.fps, random_weights=self.random_weights)
            if self.video is not None:
                self.video.write(picture)
            if self.viewer is not None:
                self.viewer(picture)
        if self.results is not None:
            self.results.write(result.frame, list(result.objects))

    def close(self) -> TrackOutputs:
        """Finish the files (also after an error or an interruption: what was written is kept)."""
        video = frames = results = None
        try:
            if self.video is not None:
                video = self.video.close()
        finally:
            if self.results is not None:
                frames, results = self.results.close()
        return TrackOutputs(video, frames, results, None if self.video is None else self.video.encoder)


def run_plain(mode: TrackMode, frames: Iterable[Frame], max_frames: int | None = None,
              results: list[FrameResult] | None = None, meter: Meter | None = None,
              stop: threading.Event | None = None) -> TrackSummary:
    """Read, predict, associate and write each frame in turn (the baseline the overlapped run,
    ``overlapped.run_overlapped``, is measured against). The outputs are closed at the end, after an error and after
    an interruption alike. ``results``: if given, each frame's ``FrameResult`` is appended to it; ``meter``: the
    run's figures and progress (default: a ``Meter`` without progress); ``stop``: once set, no more frames are
    taken."""
    meter = meter or Meter(lambda: int(getattr(frames, "dropped", 0)))
    timed = TimedFrames(frames)
    try:
        for frame in timed:
            if (max_frames is not None and meter.frames >= max_frames) or (stop is not None and stop.is_set()):
                break
            t0 = time.perf_counter()
            started = time.monotonic()
            prepared = mode.read(frame)
            t1 = time.perf_counter()
            predicted = mode.predict(prepared)
            t2 = time.perf_counter()
            result = mode.associate(predicted)
            t3 = time.perf_counter()
            mode.write(result)
            t4 = time.perf_counter()
            meter.add(timed.last + t1 - t0, t2 - t1, t3 - t2, t4 - t3,
                      time.monotonic() - (frame.captured_at or started))
            if results is not None:
                results.append(result)
    finally:
        outputs = close_run(mode, frames)
    return meter.summary(mode.tracker.next_id - 1, mode.decoder_calls, outputs)


def close_run(mode: TrackMode, frames: Iterable[Frame]) -> TrackOutputs:
    """The source closed (if it has ``close``), then the outputs, whatever happens to the first."""
    close = getattr(frames, "close", None)
    try:
        if close is not None:
            close()
    finally:
        outputs = mode.close()
    return outputs
