"""SIGINT and SIGTERM as an exception, so that ``finally`` blocks run and every temporary is removed.

``signals_raise()`` (every command of the CLI runs inside it; library code may use it too) turns SIGINT and
SIGTERM into ``Interrupted``, a ``KeyboardInterrupt`` that carries the signal and its exit code (130, 143):
code that cleans up after Ctrl-C cleans up after a job scheduler's SIGTERM the same way. A signal that
arrives within ``GRACE_S`` of the one that raised is ignored, so that the clean-up finishes; a later one
raises again (code that caught the first must not make the process unstoppable). SIGKILL still ends the
process at once; the next run then removes what it left (``hqsam_edge.owners``). A library may wrap the
exception in its own (a C extension interrupted while it initialises raises ``ImportError``):
``interruption(exc)`` finds it in the chain.

``deferred()`` holds both signals for a short block that must not stop halfway (files renamed into place
and the manifest that names them): a signal that arrives inside takes effect when the block ends.

Signals reach Python handlers in the main thread only, between bytecodes: elsewhere both are no-ops, and a
long call into a C library (a TensorRT build) is interrupted when it returns. Standard library only.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)
GRACE_S = 5.0  # a repeated signal within this time of the first is ignored: the clean-up is running


class Interrupted(KeyboardInterrupt):
    """The process got SIGINT or SIGTERM; ``exit_code`` is 128 + the signal number (130, 143)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum

    def __str__(self) -> str:
        return f"interrupted by {signal.Signals(self.signum).name}"


_state: dict = {"depth": 0, "raised_at": None}


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _handlers() -> dict:
    """The handlers now installed (one not installed from Python counts as the default)."""
    return {s: signal.getsignal(s) or signal.SIG_DFL for s in SIGNALS}


def _raise(signum: int, frame) -> None:
    now = time.monotonic()
    if _state["raised_at"] is not None and now - _state["raised_at"] < GRACE_S:
        return  # the first one is unwinding: let its clean-up finish
    _state["raised_at"] = now
    raise Interrupted(signum)


def interruption(exc: BaseException | None) -> Interrupted | None:
    """The ``Interrupted`` that ``exc`` is, or that caused it (a library's own error raised as it unwound)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, Interrupted):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


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
    _state.update(depth=1, raised_at=None)
    for s in SIGNALS:
        signal.signal(s, _raise)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _state.update(depth=0, raised_at=None)


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
