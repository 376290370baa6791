"""Progress of long work: stages and their steps, as a bar on a terminal and as lines in a log.

Library code reports through the module functions (``stage``, ``step``, ``note``), which go to the reporter
the caller installed with ``reporting(Reporter(...))`` and do nothing otherwise, so a library user sees
nothing unless they ask, and no signature carries a progress argument. The command line installs one for
every command (``-q`` silences it, ``-v`` adds the steps' lines to a log).

On a terminal each stage with steps shows a bar (``tqdm``) and every stage ends with one line; elsewhere
(a log, CI, a pipe) each stage prints one line when it ends, with the stage's seconds and the time since
the command started, and stages with steps also print a line at about every tenth of their steps::

    [   4.1 s] export: build the model (4.1 s)
    [  16.9 s] export: trace the encoder (12.8 s)
    [  40.2 s] build: calibration images 4/16
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any


@dataclass
class Reporter:
    """Where progress goes: ``stream`` (stderr), as bars if it is a terminal (``interactive`` None: ask it)."""

    stream: IO[str] = field(default_factory=lambda: sys.stderr)
    interactive: bool | None = None
    verbose: bool = False
    start: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        if self.interactive is None:
            self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())

    def line(self, text: str) -> None:
        elapsed = time.perf_counter() - self.start
        print(f"[{elapsed:7.1f} s] {text}", file=self.stream, flush=True)


_CURRENT: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar("hqsam_edge_progress", default=None)


@contextlib.contextmanager
def reporting(reporter: Reporter | None) -> Iterator[Reporter | None]:
    """Send the progress of the work inside the block to ``reporter`` (None: nowhere)."""
    token = _CURRENT.set(reporter)
    try:
        yield reporter
    finally:
        _CURRENT.reset(token)


def current() -> Reporter | None:
    return _CURRENT.get()


class Stage:
    """One stage of work; ``advance()`` once per step of ``total``."""

    def __init__(self, reporter: Reporter | None, name: str, total: int | None, unit: str, initial: int = 0) -> None:
        self.reporter, self.name, self.total, self.unit = reporter, name, total, unit
        self.done = initial
        self.started = time.perf_counter()
        self.detail = ""
        self._bar: Any = None
        self._next_line = initial
        if reporter is not None and reporter.interactive and total:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=name, unit=unit, file=reporter.stream, leave=False)

    def advance(self, n: int = 1, detail: str = "") -> None:
        self.done += n
        self.detail = detail or self.detail
        if self.reporter is None:
            return
        if self._bar is not None:
            self._bar.update(n)
            if detail:
                self._bar.set_postfix_str(detail, refresh=False)
        elif self.total and (self.done >= self._next_line or self.reporter.verbose) and self.done < self.total:
            self.reporter.line(f"{self.name} {self.done}/{self.total} {self.unit}{'' if self.done == 1 else 's'}"
                               + (f" ({detail})" if detail else ""))
            self._next_line = self.done + max(1, self.total // 10)

    def close(self, failed: bool = False) -> None:
        if self.reporter is None:
            return
        if self._bar is not None:
            self._bar.close()
        seconds = time.perf_counter() - self.started
        count = f", {self.done}/{self.total} {self.unit}s" if self.total else ""
        detail = f", {self.detail}" if self.detail else ""
        self.reporter.line(f"{self.name}{' failed' if failed else ''} ({seconds:.1f} s{count}{detail})")


@contextlib.contextmanager
def stage(name: str, total: int | None = None, unit: str = "step", initial: int = 0) -> Iterator[Stage]:
    """A stage of the current work: one line when it ends (a bar meanwhile on a terminal, if it has steps;
    ``initial`` of them done already, as when a run resumes)."""
    s = Stage(current(), name, total, unit, initial)
    try:
        yield s
    except BaseException:
        s.close(failed=True)
        raise
    s.close()


def note(text: str) -> None:
    """One line of the current work (what it chose, what it skipped)."""
    reporter = current()
    if reporter is not None:
        reporter.line(text)
