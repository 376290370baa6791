"""The stream engine: items from an iterator through read -> model -> write, every stage overlapped.

``run_stream(jobs, mode, write)`` runs three stages at once, joined by two queues of ``queue_size`` items::

    reader thread    job = next(jobs); read = mode.read(job)       files, decoding, pre-processing
    calling thread   result = mode.predict(job, read)              the model (its CUDA context, its thread)
    writer thread    write(job, result)                            encoding, output files

The protocol, generic over the job ``J``, what the reader makes of it ``R`` and the model's result ``Res``:

- ``Mode[J, R, Res]``: ``read(job) -> R`` and ``predict(job, read) -> Res``; ``write: (job, result) -> None``.
  Each is one item's work and keeps no state of the engine, so a cluster runner (a SLURM shard, a Ray Data
  ``map_batches``) calls the same reader and writer on its own items; state that spans items (a tracker)
  lives in ``predict``, which sees the items one at a time, in order.
- ``jobs`` is any iterable, an endless one too (a live camera): the reader takes the next job only when the
  queue has room, so while the model works on one job at most ``queue_size + 1`` more have been taken
  (``queue_size`` waiting, one in the reader's hands), and as many results wait for the writer. Results are
  written in the jobs' order.
- A failure of one item (an ``Exception`` from ``read``, ``predict`` or ``write``) becomes an
  ``ItemFailure(job, stage, error)`` that travels in the item's place; in the writer thread, after every
  item before it has been written, ``on_failure(failure)`` says ``"skip"`` (the item is left out, the
  stream goes on) or ``"stop"`` (the default: nothing after it is written, every stage stops, and
  ``run_stream`` raises ``failure.error`` once they have).
- Anything else stops every stage at once and is raised: the iterator raising, a ``BaseException`` that is
  not an ``Exception`` (``KeyboardInterrupt``, ``hqsam_edge.interrupts.Interrupted`` from SIGINT / SIGTERM,
  which reach the calling thread), ``on_failure`` raising. The reader takes no more jobs and the model stage
  ends at once; the writer writes the results already computed (the model's work is kept), then ends.
- ``stop`` (a ``threading.Event``), set by the caller from any thread or from ``write`` / ``on_failure``,
  ends a run cleanly: no more jobs are taken, those in flight are predicted and written, and ``run_stream``
  returns (``StreamStats.stopped``). This is how an endless stream ends without an error.

``write`` and ``on_failure`` are called in the writer thread, one at a time, in the jobs' order; ``read``
and ``next(jobs)`` in the reader thread (a stop waits for the call in progress: a camera's iterator should
return within its frame timeout). Both threads run in copies of the caller's ``contextvars``
context, so ``hqsam_edge.progress`` reports from them reach the caller's reporter. ``StreamStats.busy``
gives the seconds each stage worked (waiting for a queue or for ``next(jobs)`` not counted): the slowest
stage bounds the throughput.
"""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

J = TypeVar("J")  # a job
R = TypeVar("R")  # what the reader made of it
Res = TypeVar("Res")  # what the model made of that
J_contra = TypeVar("J_contra", contravariant=True)
J_co = TypeVar("J_co", covariant=True)
Res_co = TypeVar("Res_co", covariant=True)

StageName = Literal["read", "predict", "write"]
Verdict = Literal["skip", "stop"]
_POLL_S = 0.05  # how often a waiting stage looks whether the others are still there


class Mode(Protocol[J_contra, R, Res_co]):
    """What the reader and the model stage do with one job (see the module doc)."""

    def read(self, job: J_contra) -> R:
        """In the reader thread: load what the model needs (file, decoding, pre-processing)."""
        ...

    def predict(self, job: J_contra, read: R) -> Res_co:
        """In the calling thread, one job at a time, in order: run the model."""
        ...


@dataclass(frozen=True)
class ItemFailure(Generic[J_co]):
    """One job that failed: the stage that raised and its error."""

    job: J_co
    stage: StageName
    error: Exception


@dataclass(frozen=True)
class Busy:
    """Seconds each stage worked."""

    read: float
    predict: float
    write: float


@dataclass(frozen=True)
class StreamStats:
    """One run: jobs written, jobs skipped on failures, the stages' busy seconds, whether ``stop`` ended it."""

    written: int
    skipped: int
    busy: Busy
    stopped: bool


def stop_on_failure(failure: ItemFailure[object]) -> Verdict:
    """The default ``on_failure``: any failed item stops the run."""
    return "stop"


@dataclass(frozen=True)
class _Ready(Generic[J, R]):
    job: J
    read: R


@dataclass(frozen=True)
class _Done(Generic[J, Res]):
    job: J
    result: Res


@dataclass(frozen=True)
class _Fatal:
    """Ends the stream with ``error`` (not an item's failure)."""

    error: BaseException


class _End:
    """No more items."""


_END = _End()


def _put(q: queue.Queue[J], item: J, alive: Callable[[], bool]) -> bool:
    """Put ``item``, waiting while the consumer is ``alive()``; False if it is gone."""
    while True:
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            if not alive():
                return False


class _Run(Generic[J, R, Res]):
    """One ``run_stream`` call: the queues, the stages' bodies and what they counted.

    ``halt`` set means the reader and the model stage end now: the writer sets it when it ends (the run can
    write no more), the calling thread when it leaves its stage for any reason. The writer itself ends only
    on ``_END`` (what was queued before it is written) or on a failure that stops.
    """

    def __init__(self, mode: Mode[J, R, Res], write: Callable[[J, Res], None], queue_size: int,
                 on_failure: Callable[[ItemFailure[J]], Verdict], stop: threading.Event) -> None:
        self.mode, self.write, self.on_failure, self.stop = mode, write, on_failure, stop
        self.q_in: queue.Queue[_Ready[J, R] | ItemFailure[J] | _Fatal | _End] = queue.Queue(queue_size)
        self.q_out: queue.Queue[_Done[J, Res] | ItemFailure[J] | _End] = queue.Queue(queue_size)
        self.halt = threading.Event()
        self.fatal: BaseException | None = None  # what ended the writer: a failure that stops, or an error
        self.read_s = self.predict_s = self.write_s = 0.0  # each written by its own stage only
        self.written = self.skipped = 0

    def running(self) -> bool:
        return not self.halt.is_set()

    def reader(self, jobs: Iterator[J]) -> None:
        """The reader thread: jobs read in order onto ``q_in``, failures in their place; then ``_END``."""
        while self.running() and not self.stop.is_set():
            try:
                job = next(jobs)
            except StopIteration:
                break
            except BaseException as exc:  # the iterator itself: not one item's failure
                _put(self.q_in, _Fatal(exc), self.running)
                return
            item = self.read(job)
            if not _put(self.q_in, item, self.running) or isinstance(item, _Fatal):
                return
        _put(self.q_in, _END, self.running)

    def read(self, job: J) -> _Ready[J, R] | ItemFailure[J] | _Fatal:
        started = time.perf_counter()
        try:
            return _Ready(job, self.mode.read(job))
        except Exception as exc:
            return ItemFailure(job, "read", exc)
        except BaseException as exc:
            return _Fatal(exc)
        finally:
            self.read_s += time.perf_counter() - started

    def model(self, reader: threading.Thread, writer: threading.Thread) -> None:
        """The calling thread's stage: predict each job read, hand results and failures on in order."""
        def writing() -> bool:
            return writer.is_alive() and self.running()

        while self.running():
            try:
                item = self.q_in.get(timeout=_POLL_S)
            except queue.Empty:
                if not reader.is_alive() and self.q_in.empty() and self.running():
                    raise RuntimeError("the stream's reader thread ended without finishing") from None
                continue
            if isinstance(item, _End):
                return
            if isinstance(item, _Fatal):
                raise item.error
            out = item if isinstance(item, ItemFailure) else self.predict(item)
            if not _put(self.q_out, out, writing):
                return

    def predict(self, item: _Ready[J, R]) -> _Done[J, Res] | ItemFailure[J]:
        started = time.perf_counter()
        try:
            return _Done(item.job, self.mode.predict(item.job, item.read))
        except Exception as exc:
            return ItemFailure(item.job, "predict", exc)
        finally:
            self.predict_s += time.perf_counter() - started

    def writer(self) -> None:
        """The writer thread: results written and failures judged, in order, until ``_END`` or a stop."""
        try:
            while not isinstance(item := self.q_out.get(), _End):
                failure = self.write_one(item) if isinstance(item, _Done) else item
                if failure is None:
                    continue
                if self.on_failure(failure) != "skip":
                    self.fatal = failure.error
                    return
                self.skipped += 1
        except BaseException as exc:  # on_failure raised, or write raised what is not an item's failure
            self.fatal = exc
        finally:
            self.halt.set()

    def write_one(self, item: _Done[J, Res]) -> ItemFailure[J] | None:
        started = time.perf_counter()
        try:
            self.write(item.job, item.result)
            self.written += 1
            return None
        except Exception as exc:
            return ItemFailure(item.job, "write", exc)
        finally:
            self.write_s += time.perf_counter() - started


def run_stream(jobs: Iterable[J], mode: Mode[J, R, Res], write: Callable[[J, Res], None], *, queue_size: int = 4,
               on_failure: Callable[[ItemFailure[J]], Verdict] = stop_on_failure,
               stop: threading.Event | None = None) -> StreamStats:
    """Every job of ``jobs`` through ``mode.read`` -> ``mode.predict`` -> ``write``, overlapped (module doc).

    Returns when ``jobs`` ends or ``stop`` is set and every job taken has been written or skipped; raises
    the error that stopped the run once every stage has ended.
    """
    if queue_size < 1:
        raise ValueError(f"queue_size must be at least 1, not {queue_size}")
    stop = stop if stop is not None else threading.Event()
    run: _Run[J, R, Res] = _Run(mode, write, queue_size, on_failure, stop)
    reader = threading.Thread(target=contextvars.copy_context().run, args=(run.reader, iter(jobs)),
                              name="stream-reader", daemon=True)
    writer = threading.Thread(target=contextvars.copy_context().run, args=(run.writer,),
                              name="stream-writer", daemon=True)
    reader.start()
    writer.start()
    try:
        run.model(reader, writer)
    finally:  # on any exit the reader stops at once; the writer writes what is already computed, then ends
        run.halt.set()
        _put(run.q_out, _END, writer.is_alive)
        writer.join()
        reader.join()
    if run.fatal is not None:
        raise run.fatal
    return StreamStats(run.written, run.skipped, Busy(run.read_s, run.predict_s, run.write_s), stop.is_set())
