"""The segment modes behind one protocol, and the one place that opens the model for a run.

A ``SegmentMode`` is a stream mode (``hqsam_edge.apps.stream.Mode``: ``read`` in the reader thread,
``predict`` in the model stage) over ``plan.Job`` s, plus ``entries(job, result)``: the COCO result entries
of one image, made in the writer thread (RLE encoding overlaps the model). The modes: ``BoxMode``
(``box_mode``), ``EverythingMode`` (``everything_mode``), ``DetectorMode`` (``detector_mode``), and
``NoModelMode`` when no image left needs the model (every one has no boxes), so that such a run opens none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from ...runtime.predictor import Predictor
from ..stream import ItemFailure, Mode, StreamStats, Verdict, run_stream
from .box_mode import BoxMode
from .plan import Job, Plan, SegmentSpec
from .results import Entry

R = TypeVar("R")
Res = TypeVar("Res")


class SegmentMode(Mode[Job, R, Res], Protocol[R, Res]):
    """A stream mode over images whose results are COCO entries."""

    def entries(self, job: Job, result: Res) -> list[Entry]:
        """In the writer thread: the result of ``job`` as its COCO result entries."""
        ...


class Sink(Protocol):
    """Where a run's images go, in the writer thread, in image order."""

    def write(self, job: Job, entries: list[Entry]) -> None:
        """Write the entries of ``job``."""
        ...

    def on_failure(self, failure: ItemFailure[Job]) -> Verdict:
        """Skip the image that failed, or stop the run."""
        ...


Run = Callable[[Sink], StreamStats]  # the images left, through the opened mode into a sink


class NoModelMode:
    """Every image left has no boxes: no read, no model, ``[]`` each."""

    def read(self, job: Job) -> None:
        return None

    def predict(self, job: Job, read: None) -> None:
        return None

    def entries(self, job: Job, result: None) -> list[Entry]:
        return []


def streamed(mode: SegmentMode[R, Res], jobs: Sequence[Job], queue_size: int) -> Run:
    """``jobs`` through ``mode`` (``stream.run_stream``), each image's entries made and written by the sink's
    writer."""

    def run(sink: Sink) -> StreamStats:
        def write(job: Job, result: Res) -> None:
            sink.write(job, mode.entries(job, result))

        return run_stream(jobs, mode, write, queue_size=queue_size, on_failure=sink.on_failure)

    return run


def model_mode(spec: SegmentSpec, boxes_path: str, predictor: Predictor) -> SegmentMode[Any, Any]:
    """The mode that runs ``predictor`` for ``spec``: ``DetectorMode``, ``EverythingMode`` or ``BoxMode``."""
    if spec.detector is not None:
        from ..detector import OnnxDetector
        from .detector_mode import DetectorMode

        return DetectorMode(OnnxDetector(spec.detector, spec.detector_options), predictor)
    if spec.everything is not None:
        from .everything_mode import EverythingMode

        return EverythingMode(predictor, spec.everything)
    return BoxMode(boxes_path, predictor)


def open_mode(plan: Plan, todo: Sequence[Job], open_predictor: Callable[[], Predictor]) -> Run:
    """The mode for ``plan``'s images ``todo``; the model is opened here, and only if one of them needs it."""
    queue_size = plan.spec.queue_size
    if not any(plan.needs_model(job) for job in todo):
        return streamed(NoModelMode(), todo, queue_size)
    return streamed(model_mode(plan.spec, plan.boxes_path, open_predictor()), todo, queue_size)
