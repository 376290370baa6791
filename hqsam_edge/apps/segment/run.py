"""``segment_images``: a plan, the model opened if needed, OUT prepared, the images streamed, the results merged."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ... import progress
from ...atomic import note_kept
from ...errors import UsageError
from ...runtime.predictor import Predictor
from ..stream import ItemFailure, Verdict
from .merge import record_path, write_record
from .modes import Run, open_mode
from .plan import Job, Plan, SegmentSpec, make_plan
from .ray_runner import RayRun
from .results import (ERRORS_NAME, PER_IMAGE, RESULTS_NAME, Entry, ImageFailure, check_same_model, merge_results,
                      read_results, record_model, remove_stale_temps, write_errors, write_image)


@dataclass(frozen=True)
class SegmentSummary:
    """One run: image counts, masks written, wall time and the seconds each stage was busy."""

    images: int  # matched by the glob
    segmented: int  # encoded and written in this run
    empty: int  # without boxes: written as [] in this run
    skipped: int  # already written by an earlier run
    masks: int  # written in this run
    total_masks: int  # in results.json
    results: Path
    seconds: float
    busy: dict[str, float] = field(default_factory=dict)  # read / encode / write
    failed: tuple[ImageFailure, ...] = ()  # bad images left out (on_error="skip"), listed in ``errors``
    errors: Path | None = None  # OUT/errors.json, when some image was left out

    shard: str = ""  # "K/N" of a shard's run: ``results`` is its record, ``errors`` None (see ``merge``)

    def line(self) -> str:
        busy = ", ".join(f"{k} {v:.1f} s" for k, v in self.busy.items())
        bad = f"; {len(self.failed)} image(s) skipped on errors (see {self.errors})" if self.failed else ""
        if self.shard:
            bad = f"; {len(self.failed)} image(s) skipped on errors (listed in {self.results})" if self.failed else ""
        what = f"shard {self.shard}: " if self.shard else ""
        then = f"; when every shard is done: hqsam-edge merge {self.results.parents[1]}" if self.shard else ""
        return (f"{what}segmented {self.segmented} image(s) ({self.masks} masks) in {self.seconds:.1f} s, "
                f"skipped {self.skipped} already done, {self.empty} without boxes{bad}; wrote {self.results} "
                f"({self.total_masks} masks, {self.images - len(self.failed)} images){then}; busy: {busy}")


class _Tally:
    """The run's sink (``modes.Sink``, in the writer thread): writes each image's file, counts, and judges
    failures: with ``skip``, an image that cannot be read or whose boxes are wrong for it is noted and left
    out; anything else stops."""

    def __init__(self, plan: Plan, bar: progress.Stage) -> None:
        self.out, self.skip, self.bar = plan.out, plan.skip, bar
        self.segmented = self.empty = self.masks = 0
        self.failed: list[ImageFailure] = []

    def write(self, job: Job, entries: list[Entry]) -> None:
        self.written(job, write_image(self.out, job.rel, entries))

    def written(self, job: Job, n: int) -> None:
        """``job``'s file, with ``n`` entries, is written (here, or by a Ray actor)."""
        if n:
            self.segmented += 1
        else:
            self.empty += 1
        self.masks += n
        self.bar.advance(1, detail=f"{self.masks} masks")

    def refused(self, failure: ImageFailure) -> None:
        self.failed.append(failure)
        progress.note(failure.line())
        self.bar.advance(1, detail=f"{self.masks} masks")

    def on_failure(self, failure: ItemFailure[Job]) -> Verdict:
        if not (self.skip and failure.stage == "read" and isinstance(failure.error, PER_IMAGE)):
            return "stop"
        self.refused(ImageFailure.of(failure.job.rel, failure.error))
        return "skip"


def _prepare_out(plan: Plan, run_id: str, has_work: bool) -> None:
    """OUT made, its model recorded, what a killed run left removed, the last run's summary files removed.

    A shard with work to do removes its own record and the merged files (no longer true); one without
    leaves them, and never touches another shard's record."""
    out = plan.out
    try:
        out.mkdir(parents=True, exist_ok=True)
        record_model(out, run_id)
        remove_stale_temps(out)
        if has_work:  # results.json exists only after a run that finished
            (out / RESULTS_NAME).unlink(missing_ok=True)
            if plan.shard is not None:
                record_path(out, plan.shard).unlink(missing_ok=True)
        if has_work or plan.shard is None:
            (out / ERRORS_NAME).unlink(missing_ok=True)  # errors.json tells of the last run only
    except OSError as exc:
        raise UsageError(f"cannot prepare --out folder {out}: {exc.strerror or exc}") from None


def _open_run(plan: Plan, todo: tuple[Job, ...], open_predictor: Callable[[], Predictor]) -> Run | RayRun:
    """The images ``todo`` through this process's stream, or through Ray actors (``spec.ray``) when one of
    them needs the model."""
    if plan.spec.ray is not None and any(plan.needs_model(job) for job in todo):
        return RayRun(plan, todo, open_predictor, plan.spec.ray)
    return open_mode(plan, todo, open_predictor)


def _finish(plan: Plan, failed: list[ImageFailure]) -> tuple[int, Path, Path | None]:
    """results.json and errors.json (a shard: its record); the masks in all, the file written, errors.json."""
    left_out = {f.file for f in failed}
    images = ((j.rel, plan.expected(j)) for j in plan.jobs if j.rel not in left_out)
    if plan.shard is None:
        total = merge_results(plan.out, images)
        return total, plan.out / RESULTS_NAME, write_errors(plan.out, failed)
    total = sum(1 for _ in read_results(plan.out, images))  # every image there: the record is true
    return total, write_record(plan, tuple(sorted(failed, key=lambda f: f.file))), None


def segment_images(spec: SegmentSpec, open_predictor: Callable[[], Predictor]) -> SegmentSummary:
    """Segment every image ``spec.images`` matches (with its boxes from ``spec.boxes``, or everything in it)
    into ``spec.out``; the package doc says what is written.

    ``open_predictor`` makes the model (``ModelChoice.open``; a test's ``lambda: predictor``). It is called
    only when some image still needs the model, after the options, boxes file and images have been checked
    and before OUT is touched: a bad boxes file fails fast, a model that fails to open leaves nothing behind,
    and a finished run costs no model load. Bad images: see ``spec.on_error``; the summary lists those
    skipped. With ``spec.ray`` the actors open it (``ray_runner``), after OUT is prepared; with ``spec.shard``
    only that shard's images are segmented, and its record (``merge``) is written instead of results.json.
    """
    start = time.perf_counter()
    plan = make_plan(spec)
    check_same_model(plan.out, spec.run_id)
    todo = plan.todo()
    skipped = len(plan.jobs) - len(todo) - len(plan.failed)
    run = _open_run(plan, todo, open_predictor)
    _prepare_out(plan, spec.run_id, bool(todo))
    with progress.stage("segment", total=len(plan.jobs), unit="image", initial=skipped) as bar:
        tally = _Tally(plan, bar)
        for failure in plan.failed:
            tally.refused(failure)
        try:
            stats = run(tally)
        except BaseException:
            note_kept(f"kept the {skipped + tally.segmented + tally.empty} image result(s) written in {plan.out} "
                      "(run again to resume)")
            raise
    total, results, errors = _finish(plan, tally.failed)
    busy = {"read": stats.busy.read, "encode": stats.busy.predict, "write": stats.busy.write}
    if isinstance(run, RayRun):
        busy["ray start"] = run.startup_s
    return SegmentSummary(len(plan.jobs), tally.segmented, tally.empty, skipped, tally.masks, total, results,
                          time.perf_counter() - start, busy, tuple(sorted(tally.failed, key=lambda f: f.file)), errors,
                          str(plan.shard or ""))
