"""Timing calls, one way everywhere: the median and 90th percentile of N calls after warm-up.

``time_calls(fn, iters, warmup, sync=...)`` is what ``hqsam-edge bench``, the
ONNX Runtime profiles of ``calib.costs`` and the scripts in ``benchmarks/`` time
with. On a GPU, pass ``sync`` (``torch.cuda.synchronize``): it runs after the
warm-up and after every timed call, so that a call's time includes the work it
queued. ``time_interleaved`` times several calls round by round (on a noisy
machine, drift then hits each alike); ``cuda_event_ms`` is device time by CUDA
events, where torch has CUDA.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Timing:
    """Wall-clock milliseconds of the timed calls, in call order (at least one)."""

    times_ms: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def p90(self) -> float:
        """The 90th percentile: the sorted times' entry nearest to 90% of the way (the slowest of up to 5)."""
        ordered = sorted(self.times_ms)
        return ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]

    @property
    def min(self) -> float:
        return min(self.times_ms)

    @property
    def max(self) -> float:
        return max(self.times_ms)


def _nothing() -> None:
    return None


def time_calls(fn: Callable[[], Any], iters: int, warmup: int = 1, *, sync: Callable[[], None] | None = None,
               setup: Callable[[], Any] | None = None,
               each: Callable[[float | None], None] | None = None) -> Timing:
    """Call ``fn`` ``warmup`` times, then time ``max(1, iters)`` calls by the wall clock.

    ``sync`` (e.g. ``torch.cuda.synchronize``) runs after the warm-up and
    inside every timed call's time; ``setup`` runs, untimed, before every call
    (warm-up included), e.g. to drop a cache; ``each`` is told of every call
    as it ends (None for a warm-up call, else its milliseconds), e.g. to
    advance a progress bar."""
    sync, setup, each = sync or _nothing, setup or _nothing, each or (lambda ms: None)
    for _ in range(warmup):
        setup()
        fn()
        each(None)
    sync()
    times = []
    for _ in range(max(1, iters)):
        setup()
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1000)
        each(times[-1])
    return Timing(tuple(times))


def time_interleaved(calls: Mapping[str, Callable[[], Any]], rounds: int, iters: int = 1, warmup: int = 0, *,
                     alternate: bool = False, sync: Callable[[], None] | None = None) -> dict[str, Timing]:
    """Each of ``calls`` timed in every one of ``rounds`` (``time_calls(fn, iters, warmup)`` per call and
    round), in their order, reversed every other round with ``alternate``. Per name, one time a round: that
    round's median (with ``iters`` 1, the call's own time)."""
    medians: dict[str, list[float]] = {name: [] for name in calls}
    for r in range(max(1, rounds)):
        order = list(calls)[::-1] if alternate and r % 2 else list(calls)
        for name in order:
            medians[name].append(time_calls(calls[name], iters, warmup, sync=sync).median)
    return {name: Timing(tuple(times)) for name, times in medians.items()}


def cuda_event_ms(fn: Callable[[], Any], iters: int, warmup: int = 0) -> float:
    """Device milliseconds of one call of ``fn`` by CUDA events: the mean over ``max(1, iters)`` calls in a row
    after ``warmup`` (torch with CUDA; the calls' host time overlaps their device time)."""
    import torch

    for _ in range(warmup):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(max(1, iters)):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / max(1, iters)
