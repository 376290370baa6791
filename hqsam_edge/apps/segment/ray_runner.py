"""``segment --ray``: the images left to do through Ray Data actors, each holding one ``Predictor``.

    driver   the plan (``make_plan``: the same checks, the same resume from OUT's files), Ray started or
             joined, the jobs as a dataset, each result row counted into the run's tally (progress, errors)
    actors   ``Segmenter``: the model opened once by the run's own opener (``ModelChoice.open``), then each
             batch of jobs through the same stream engine, mode and per-image writer as a local run
             (``modes.streamed``, ``results.write_image``): every actor writes its images' files into OUT

OUT must be one folder that every node sees (a shared file system) and the model's folder or checkpoint a
path valid on every node. Results are the files a local run writes, byte for byte; a rerun (with or without
Ray) resumes from them, and ``results.json`` / ``errors.json`` are written by the driver at the end, as
``segment`` does. A bad image (``--on-error skip``) comes back as a row and is listed in ``errors.json``;
with ``stop`` the driver stops at the first one that comes back (other actors' images in flight may be
written: images finish in any order). Any other error in an actor (the model, a write) stops the run and is
raised as it was raised there.

Without ``address`` a local Ray is started for the run and stopped after it: ``num_cpus`` is set above what
the actors reserve (one CPU each), because Ray Data deadlocks when actors hold every CPU and its own tasks can
get none; its workers import this ``hqsam_edge`` (``PYTHONPATH``). With ``address`` (``ray://host:10001``,
``auto``, or ``host:6379``) the run joins that cluster: ask for at most its CPUs minus one actor. With
``gpus_per_actor`` each actor reserves that share of a GPU (0.5: two actors a GPU). ``ray`` is imported only
here, inside the functions (the ``ray`` extra: ``pip install 'hqsam-edge[ray]'``).
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ...errors import DataError, HQSamEdgeError, ImageError, UsageError
from ...runtime.predictor import Predictor
from ..stream import Busy, ItemFailure, StreamStats, Verdict
from .modes import model_mode, streamed
from .plan import Job, Plan, RayOptions, SegmentSpec
from .results import PER_IMAGE, Entry, ImageFailure, write_image

_INSTALL = "pip install 'hqsam-edge[ray]' (ray[data] >= 2.9)"
_COLUMNS = ("rel", "n", "stage", "error", "read_s", "predict_s", "write_s")


def require_ray() -> None:
    """``UsageError`` saying how to install Ray Data where it is missing."""
    try:
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"--ray needs Ray Data, which is not installed ({exc}): {_INSTALL}") from None


class RaySink(Protocol):
    """The run's tally in the driver: images another process wrote, and images left out."""

    skip: bool

    def written(self, job: Job, n: int) -> None:
        """``job``'s file holds ``n`` entries (written by an actor)."""
        ...

    def refused(self, failure: ImageFailure) -> None:
        """A bad image, left out."""
        ...


@dataclass(frozen=True)
class _Setup:
    """What every actor needs, sent to it once."""

    spec: SegmentSpec
    boxes_path: str
    out: Path
    open_predictor: Callable[[], Predictor]


class _Rows:
    """An actor's sink for one batch: each image written with the local run's writer, a row for each."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.rows: list[tuple[str, int, str, str]] = []

    def write(self, job: Job, entries: list[Entry]) -> None:
        self.rows.append((job.rel, write_image(self.out, job.rel, entries), "", ""))

    def on_failure(self, failure: ItemFailure[Job]) -> Verdict:
        """A bad image goes back to the driver as a row (it decides: skip or stop); anything else stops."""
        if failure.stage != "read" or not isinstance(failure.error, PER_IMAGE):
            return "stop"
        bad = ImageFailure.of(failure.job.rel, failure.error)
        self.rows.append((bad.file, -1, bad.stage, bad.error))
        return "skip"

    def columns(self, stats: StreamStats) -> dict[str, np.ndarray]:
        share = 1.0 / max(len(self.rows), 1)  # each row carries its share of the batch's busy seconds
        busy = (stats.busy.read * share, stats.busy.predict * share, stats.busy.write * share)
        cols = list(zip(*self.rows)) if self.rows else [(), (), (), ()]
        return {"rel": np.array(cols[0], dtype=object), "n": np.array(cols[1], dtype=np.int64),
                "stage": np.array(cols[2], dtype=object), "error": np.array(cols[3], dtype=object),
                **{name: np.full(len(self.rows), b) for name, b in zip(_COLUMNS[4:], busy)}}


class Segmenter:
    """A Ray Data actor: one Predictor, opened when the actor starts; each batch through the stream engine."""

    def __init__(self, setup: _Setup) -> None:
        self.setup = setup
        self.mode = model_mode(setup.spec, setup.boxes_path, setup.open_predictor())

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        jobs = [pickle.loads(b) for b in batch["job"]]
        rows = _Rows(self.setup.out)
        stats = streamed(self.mode, jobs, self.setup.spec.queue_size)(rows)
        return rows.columns(stats)


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """``UsageError`` if ``host:port`` (``ray://host:port``) takes no connection within ``timeout_s``: Ray itself
    would wait for minutes, deaf to signals. ``auto`` and addresses without a port are left to Ray."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UsageError(f"cannot join the Ray cluster at --ray-address {address}: nothing answers there "
                         f"({exc.strerror or exc}); start it with `ray start --head`, or check the address") from None


def _connect(ray: Any, options: RayOptions) -> bool:
    """Start a local Ray, or join ``options.address``; whether this run started (and must stop) it."""
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")  # Ray's C++ lines on stderr: errors only
    quiet: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    if options.address is not None:
        _check_reachable(options.address)
        try:
            ray.init(address=options.address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UsageError(f"cannot join the Ray cluster at --ray-address {options.address}: "
                             f"{' '.join(str(exc).split())}") from None
        return True
    here = str(Path(__file__).resolve().parents[3])  # the folder holding this hqsam_edge package
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=max(os.cpu_count() or 1, options.actors) + 1, runtime_env={"env_vars": {"PYTHONPATH": path}},
             **quiet)
    return True


def _raised_in_actor(exc: BaseException) -> BaseException:
    """Our error that an actor raised, out of Ray's wrappers (``cause`` / ``__cause__``); else ``exc``."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None or isinstance(seen, HQSamEdgeError):
            break
        seen = getattr(seen, "cause", None) or seen.__cause__
    return seen if isinstance(seen, HQSamEdgeError) else exc


class RayRun:
    """``segment``'s run (``modes.Run``) through Ray Data; ``startup_s``: Ray's start (or join) alone."""

    def __init__(self, plan: Plan, todo: Sequence[Job], open_predictor: Callable[[], Predictor],
                 options: RayOptions) -> None:
        require_ray()
        self.setup = _Setup(plan.spec, plan.boxes_path, plan.out, open_predictor)
        self.todo, self.options = tuple(todo), options
        self.startup_s = 0.0

    def __call__(self, sink: RaySink) -> StreamStats:
        import ray
        import ray.data

        started = time.perf_counter()
        owned = _connect(ray, self.options)
        self.startup_s = time.perf_counter() - started
        try:
            logging.getLogger("ray.data").setLevel(logging.ERROR)  # our progress, not Ray Data's plan and bars
            ray.data.DataContext.get_current().enable_progress_bars = False
            data = ray.data.from_items([{"job": pickle.dumps(j)} for j in self.todo])
            gpus = {"num_gpus": self.options.gpus_per_actor} if self.options.gpus_per_actor else {}
            results = data.map_batches(Segmenter, fn_constructor_kwargs={"setup": self.setup}, batch_format="numpy",
                                       batch_size=self.options.batch_size, num_cpus=1,
                                       compute=ray.data.ActorPoolStrategy(size=self.options.actors), **gpus)
            return self._collect(results.iter_rows(), sink)
        except Exception as exc:
            raised = _raised_in_actor(exc)
            if raised is exc:
                raise
            raise raised from None
        finally:
            if owned:
                ray.shutdown()

    def _collect(self, rows: Any, sink: RaySink) -> StreamStats:
        """Each row into the tally as it comes; a bad image stops the run unless the tally skips it."""
        jobs = {j.rel: j for j in self.todo}
        written = skipped = 0
        busy = [0.0, 0.0, 0.0]
        for row in rows:
            busy = [b + float(row[k]) for b, k in zip(busy, _COLUMNS[4:])]
            if int(row["n"]) >= 0:
                sink.written(jobs[row["rel"]], int(row["n"]))
                written += 1
                continue
            if not sink.skip:
                raise (ImageError if row["stage"] == "read" else DataError)(row["error"])
            sink.refused(ImageFailure(row["rel"], row["stage"], row["error"]))
            skipped += 1
        return StreamStats(written, skipped, Busy(*busy), False)
