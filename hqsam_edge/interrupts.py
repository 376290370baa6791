"""SIGINT and SIGTERM as an exception, so that ``finally`` blocks run and every temporary is removed.

``signals_raise()`` (every command of the CLI runs inside it; library code may use it too) turns SIGINT and
SIGTERM into ``Interrupted``, a ``KeyboardInterrupt`` that carries the signal and its exit code (130, 143):
code that cleans up after Ctrl-C cleans up after a job scheduler's SIGTERM the same way. Only the first
signal raises; one that arrives while the first unwinds is ignored, so that the clean-up finishes (SIGKILL
still ends the process; the next run then removes what it left, see ``hqsam_edge.owners``).

``deferred()`` holds both signals for a short block that must not stop halfway (files renamed into place
and the manifest that names them): a signal that arrives inside takes effect when the block ends.

Signals reach Python handlers in the main thread only, between bytecodes: elsewhere both are no-ops, and a
long call into a C library (a TensorRT build) is interrupted when it returns. Standard library only.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The process got SIGINT or SIGTERM; ``exit_code`` is 128 + the signal number (130, 143)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum

    def __str__(self) -> str:
        return f"interrupted by {signal.Signals(self.signum).name}"


_state = {"depth": 0, "raised": False}


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _handlers() -> dict:
    """The handlers now installed (one not installed from Python counts as the default)."""
    return {s: signal.getsignal(s) or signal.SIG_DFL for s in SIGNALS}


def _raise(signum: int, frame) -> None:
    if _state["raised"]:
        return  # the first one is unwinding: let its clean-up finish
    _state["raised"] = True
    raise Interrupted(signum)


@contextmanager
def signals_raise() -> Iterator[None]:
    """Inside the block, SIGINT and SIGTERM raise ``Interrupted`` (nested uses: the outermost one counts)."""
    if not _in_main_thread() or _state["depth"]:
        _state["depth"] += 1
        try:
            yield
        finally:
            _state["depth"] -= 1
        return
    previous = _handlers()
    _state.update(depth=1, raised=False)
    for s in SIGNALS:
        signal.signal(s, _raise)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _state.update(depth=0, raised=False)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then let the first one that came act as it would have."""
    if not _in_main_thread():
        yield
        return
    arrived: list[int] = []
    previous = _handlers()
    for s in SIGNALS:
        signal.signal(s, lambda signum, frame: arrived.append(signum))
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if arrived:
            signal.raise_signal(arrived[0])
