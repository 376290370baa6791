"""The stream engine (``hqsam_edge.apps.stream``) with a tiny mode: jobs are numbers, the reader passes them on,
the model doubles them; order, bounded queues, failures skipped or stopping, interruptions, endless iterators."""

from __future__ import annotations

import io
import itertools
import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from hqsam_edge import progress
from hqsam_edge.apps.stream import ItemFailure, Verdict, run_stream
from hqsam_edge.interrupts import Interrupted, signals_raise


class Numbers:
    """A mode over ints: ``read`` -> the job, ``predict`` -> twice it; each may wait, fail, or call a hook."""

    def __init__(self, *, read_s: float = 0.0, predict_s: float = 0.0, fail_read: tuple[int, ...] = (),
                 fail_predict: tuple[int, ...] = (), gate: threading.Event | None = None,
                 on_read: dict[int, BaseException | None] | None = None) -> None:
        self.read_s, self.predict_s = read_s, predict_s
        self.fail_read, self.fail_predict = fail_read, fail_predict
        self.gate = gate  # predict of job 0 waits for it
        self.on_read = on_read or {}
        self.predicted: list[int] = []

    def read(self, job: int) -> int:
        time.sleep(self.read_s)
        if job in self.on_read:
            error = self.on_read[job]
            if error is None:
                os.kill(os.getpid(), signal.SIGTERM)
            else:
                raise error
        if job in self.fail_read:
            raise ValueError(f"cannot read {job}")
        return job

    def predict(self, job: int, read: int) -> int:
        if job == 0 and self.gate is not None:
            assert self.gate.wait(10)
        time.sleep(self.predict_s)
        if job in self.fail_predict:
            raise RuntimeError(f"the model broke on {job}")
        self.predicted.append(job)
        return 2 * read


class Taken:
    """An iterator over ``jobs`` (endless by default) that counts the jobs taken from it."""

    def __init__(self, jobs: Iterator[int] | None = None) -> None:
        self.jobs = jobs if jobs is not None else itertools.count()
        self.count = 0

    def __iter__(self) -> Iterator[int]:
        return self

    def __next__(self) -> int:
        job = next(self.jobs)
        self.count += 1
        return job


def stream_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("stream-")]


def settled(read: Taken, seconds: float = 0.3) -> int:
    """``read.count`` once it has stopped changing for ``seconds``."""
    while True:
        before = read.count
        time.sleep(seconds)
        if read.count == before:
            return before


def test_results_written_in_order_with_every_stage_overlapped():
    written: list[tuple[int, int]] = []

    def write(job: int, result: int) -> None:
        time.sleep(0.1)
        written.append((job, result))

    started = time.perf_counter()
    stats = run_stream(range(8), Numbers(read_s=0.1, predict_s=0.1), write, queue_size=2)
    seconds = time.perf_counter() - started
    assert written == [(i, 2 * i) for i in range(8)]
    assert (stats.written, stats.skipped, stats.stopped) == (8, 0, False)
    assert stats.busy.read >= 0.8 and stats.busy.predict >= 0.8 and stats.busy.write >= 0.8
    assert seconds < 1.8, f"{seconds:.2f} s: the stages ran one after the other (2.4 s), not overlapped (1.0 s)"
    assert not stream_threads()


@pytest.mark.parametrize("queue_size", [1, 3])
def test_the_reader_stays_at_most_queue_size_plus_one_ahead(queue_size):
    """While the model is held on job 0, the reader takes ``queue_size`` jobs for the queue and one for its
    hands, then waits: an endless iterator is not drained."""
    gate = threading.Event()
    jobs = Taken()
    stop = threading.Event()
    result: list[int] = []

    def write(job: int, doubled: int) -> None:
        result.append(job)
        if job == 20:
            stop.set()

    thread = threading.Thread(target=run_stream, args=(jobs, Numbers(gate=gate), write),
                              kwargs=dict(queue_size=queue_size, stop=stop))
    thread.start()
    try:
        assert settled(jobs) == 1 + queue_size + 1
    finally:
        gate.set()
        thread.join(10)
    assert not thread.is_alive() and result[:21] == list(range(21))


def test_the_writer_holds_back_the_model_and_the_reader():
    """A writer held on job 0: ``queue_size`` results wait for it, the model holds one, then the reader's
    ``queue_size`` + 1."""
    gate = threading.Event()
    jobs = Taken(iter(range(100)))

    def write(job: int, doubled: int) -> None:
        if job == 0:
            assert gate.wait(10)

    thread = threading.Thread(target=run_stream, args=(jobs, Numbers(), write), kwargs=dict(queue_size=2))
    thread.start()
    try:
        assert settled(jobs) == 1 + 2 + 1 + 2 + 1
    finally:
        gate.set()
        thread.join(10)
    assert jobs.count == 100


def test_failed_items_are_judged_in_order_and_skipped():
    events: list[str] = []
    failures: list[ItemFailure[int]] = []

    def write(job: int, result: int) -> None:
        if job == 7:
            raise OSError("disk full")
        events.append(f"w{job}")

    def on_failure(failure: ItemFailure[int]) -> Verdict:
        events.append(f"f{failure.job}")
        failures.append(failure)
        return "skip"

    stats = run_stream(range(10), Numbers(fail_read=(3,), fail_predict=(5,)), write, queue_size=1,
                       on_failure=on_failure)
    assert events == ["w0", "w1", "w2", "f3", "w4", "f5", "w6", "f7", "w8", "w9"]
    assert [(f.job, f.stage, type(f.error)) for f in failures] == [(3, "read", ValueError),
                                                                    (5, "predict", RuntimeError),
                                                                    (7, "write", OSError)]
    assert str(failures[0].error) == "cannot read 3"
    assert (stats.written, stats.skipped) == (7, 3)


def test_a_failed_item_that_stops_ends_the_run_after_every_item_before_it():
    """The default verdict is stop: the error is raised, every job before it written, none after it, though
    the reader and the model had gone on."""
    written: list[int] = []
    mode = Numbers(fail_read=(3,))
    with pytest.raises(ValueError, match="cannot read 3"):
        run_stream(range(50), mode, lambda job, result: written.append(job), queue_size=4)
    assert written == [0, 1, 2]
    assert not stream_threads()


def test_an_exception_in_the_model_stops_reader_and_writer():
    jobs = Taken()
    written: list[int] = []
    judged: list[ItemFailure[int]] = []

    def stop(failure: ItemFailure[int]) -> Verdict:
        judged.append(failure)
        return "stop"

    with pytest.raises(RuntimeError, match="the model broke on 5"):
        run_stream(jobs, Numbers(fail_predict=(5,)), lambda job, result: written.append(job), queue_size=2,
                   on_failure=stop)
    assert written == [0, 1, 2, 3, 4] and [(f.job, f.stage) for f in judged] == [(5, "predict")]
    assert not stream_threads()
    taken = jobs.count
    assert taken <= 6 + 2 * 2 + 3  # the endless iterator was left alone once the run stopped
    time.sleep(0.2)
    assert jobs.count == taken


def test_an_interruption_in_the_model_stops_every_stage_at_once_and_keeps_what_was_computed():
    """Not an item's failure: never judged, raised as it is; the results computed before it are written."""
    class Interrupting(Numbers):
        def predict(self, job: int, read: int) -> int:
            if job == 5:
                raise KeyboardInterrupt
            return super().predict(job, read)

    jobs, written = Taken(), []

    def judge(failure: ItemFailure[int]) -> Verdict:
        raise AssertionError(f"an interruption is no item's failure: {failure}")

    with pytest.raises(KeyboardInterrupt):
        run_stream(jobs, Interrupting(), lambda job, result: written.append(job), queue_size=3, on_failure=judge)
    assert written == [0, 1, 2, 3, 4] and not stream_threads()
    taken = jobs.count
    time.sleep(0.2)
    assert jobs.count == taken


def test_sigterm_while_the_model_stage_waits_stops_the_stream():
    """SIGTERM (``interrupts.signals_raise``) sent from the reader, while the calling thread waits for work:
    ``Interrupted`` with its exit code, no thread left, the reader no longer taking jobs."""
    jobs, written = Taken(), []
    mode = Numbers(read_s=0.01, on_read={5: None})
    with signals_raise(), pytest.raises(Interrupted) as caught:
        run_stream(jobs, mode, lambda job, result: written.append(job), queue_size=2)
        time.sleep(5)  # not reached: the signal is raised in this thread
    assert caught.value.exit_code == 143
    assert not stream_threads() and written == list(range(len(written))) and len(written) <= 6
    taken = jobs.count
    time.sleep(0.2)
    assert jobs.count == taken


def test_an_iterator_that_raises_stops_the_run_after_the_items_before_it():
    def frames() -> Iterator[int]:
        yield from range(4)
        raise OSError("the camera is gone")

    written: list[int] = []
    with pytest.raises(OSError, match="the camera is gone"):
        run_stream(frames(), Numbers(), lambda job, result: written.append(job), queue_size=2)
    assert written == [0, 1, 2, 3] and not stream_threads()


def test_an_endless_iterator_stopped_by_the_caller():
    """``stop`` set from the writer (the 10th frame) or from another thread: the jobs in flight are finished,
    the run returns normally."""
    jobs, stop, written = Taken(), threading.Event(), []

    def write(job: int, result: int) -> None:
        written.append(job)
        if job == 9:
            stop.set()

    stats = run_stream(jobs, Numbers(), write, queue_size=2, stop=stop)
    assert stats.stopped and written == list(range(len(written))) and 10 <= len(written) <= 10 + 2 * 2 + 3
    assert stats.written == len(written) == jobs.count

    jobs, stop = Taken(), threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    stats = run_stream(jobs, Numbers(read_s=0.01), lambda job, result: None, queue_size=2, stop=stop)
    assert stats.stopped and 5 < stats.written == jobs.count and not stream_threads()


def test_reader_and_writer_report_to_the_callers_progress():
    """The threads run in copies of the caller's context: ``progress.note`` from ``write`` reaches the
    reporter the caller installed."""
    log = io.StringIO()
    with progress.reporting(progress.Reporter(stream=log, interactive=False)):
        run_stream(range(3), Numbers(), lambda job, result: progress.note(f"wrote {job}: {result}"))
    assert [line.split("] ")[1] for line in log.getvalue().splitlines()] == ["wrote 0: 0", "wrote 1: 2", "wrote 2: 4"]


def test_queue_size_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        run_stream(range(3), Numbers(), lambda job, result: None, queue_size=0)
