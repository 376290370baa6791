"""hqsam_edge.timing: the one way calls are timed (bench, calib.costs, benchmarks/)."""

from __future__ import annotations

import types

import pytest

from hqsam_edge import timing
from hqsam_edge.timing import Timing, time_calls, time_interleaved


@pytest.fixture
def clock(monkeypatch):
    """A clock that only moves when a call says so: ``clock.spend(ms)``."""
    state = types.SimpleNamespace(now=0.0)
    state.spend = lambda ms: setattr(state, "now", state.now + ms / 1000)
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=lambda: state.now))
    return state


def test_median_and_p90_of_the_timed_calls_after_warmup(clock):
    durations = iter([100.0, 100.0, 5.0, 1.0, 4.0, 2.0, 3.0])  # two warm-up calls, then five timed
    calls, told = [], []
    t = time_calls(lambda: calls.append(clock.spend(next(durations))), 5, warmup=2, each=told.append)
    assert len(calls) == 7 and t.times_ms == pytest.approx((5.0, 1.0, 4.0, 2.0, 3.0))
    assert t.median == pytest.approx(3.0) and t.p90 == pytest.approx(5.0)
    assert (t.min, t.max) == pytest.approx((1.0, 5.0))
    assert told[:2] == [None, None] and told[2:] == pytest.approx([5.0, 1.0, 4.0, 2.0, 3.0])


def test_p90_of_many_and_at_least_one_call():
    assert Timing(tuple(float(i) for i in range(1, 21))).p90 == 18.0  # round(0.9 * 19) = 17 -> the 18th
    assert len(time_calls(lambda: None, 0, warmup=0).times_ms) == 1


def test_sync_is_inside_each_timed_call_and_setup_outside(clock):
    events = []

    def sync():
        events.append("sync")
        clock.spend(10.0)  # the device finishing what the call queued

    def setup():
        events.append("setup")
        clock.spend(1000.0)  # not the call's time

    t = time_calls(lambda: events.append("call"), 2, warmup=1, sync=sync, setup=setup)
    assert events == ["setup", "call", "sync", "setup", "call", "sync", "setup", "call", "sync"]
    assert t.times_ms == pytest.approx((10.0, 10.0))


def test_interleaved_rounds_alternate_and_keep_each_rounds_median(clock):
    order = []

    def call(name, ms):
        def fn():
            order.append(name)
            clock.spend(ms)
        return fn

    times = time_interleaved({"a": call("a", 2.0), "b": call("b", 3.0)}, rounds=3, iters=2, warmup=1,
                             alternate=True)
    assert order == ["a"] * 3 + ["b"] * 3 + ["b"] * 3 + ["a"] * 3 + ["a"] * 3 + ["b"] * 3
    assert times["a"].times_ms == pytest.approx((2.0, 2.0, 2.0)) and times["b"].median == pytest.approx(3.0)
    order.clear()
    time_interleaved({"a": call("a", 1.0), "b": call("b", 1.0)}, rounds=2)
    assert order == ["a", "b", "a", "b"]
