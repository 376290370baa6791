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
from .modes import open_mode
from .plan import Job, Plan, SegmentSpec, make_plan
from .results import (ERRORS_NAME, PER_IMAGE, RESULTS_NAME, Entry, ImageFailure, check_same_model, merge_results,
                      record_model, remove_stale_temps, write_errors, write_image)


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

    def line(self) -> str:
        busy = ", ".join(f"{k} {v:.1f} s" for k, v in self.busy.items())
        bad = f"; {len(self.failed)} image(s) skipped on errors (see {self.errors})" if self.failed else ""
        return (f"segmented {self.segmented} image(s) ({self.masks} masks) in {self.seconds:.1f} s, "
                f"skipped {self.skipped} already done, {self.empty} without boxes{bad}; wrote {self.results} "
                f"({self.total_masks} masks, {self.images - len(self.failed)} images); busy: {busy}")


class _Tally:
    """The run's sink (``modes.Sink``, in the writer thread): writes each image's file, counts, and judges
    failures: with ``skip``, an image that cannot be read or whose boxes are wrong for it is noted and left
    out; anything else stops."""

    def __init__(self, plan: Plan, bar: progress.Stage) -> None:
        self.out, self.skip, self.bar = plan.out, plan.skip, bar
        self.segmented = self.empty = self.masks = 0
        self.failed: list[ImageFailure] = []

    def write(self, job: Job, entries: list[Entry]) -> None:
        n = write_image(self.out, job.rel, entries)
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


def _prepare_out(out: Path, run_id: str, has_work: bool) -> None:
    """OUT made, its model recorded, what a killed run left removed, the last run's summary files removed."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        record_model(out, run_id)
        remove_stale_temps(out)
        if has_work:  # results.json exists only after a run that finished
            (out / RESULTS_NAME).unlink(missing_ok=True)
        (out / ERRORS_NAME).unlink(missing_ok=True)  # errors.json tells of the last run only
    except OSError as exc:
        raise UsageError(f"cannot prepare --out folder {out}: {exc.strerror or exc}") from None


def segment_images(spec: SegmentSpec, open_predictor: Callable[[], Predictor]) -> SegmentSummary:
    """Segment every image ``spec.images`` matches (with its boxes from ``spec.boxes``, or everything in it)
    into ``spec.out``; the package doc says what is written.

    ``open_predictor`` makes the model (``ModelChoice.open``; a test's ``lambda: predictor``). It is called
    only when some image still needs the model, after the options, boxes file and images have been checked
    and before OUT is touched: a bad boxes file fails fast, a model that fails to open leaves nothing behind,
    and a finished run costs no model load. Bad images: see ``spec.on_error``; the summary lists those
    skipped.
    """
    start = time.perf_counter()
    plan = make_plan(spec)
    check_same_model(plan.out, spec.run_id)
    todo = plan.todo()
    skipped = len(plan.jobs) - len(todo) - len(plan.failed)
    run = open_mode(plan, todo, open_predictor)
    _prepare_out(plan.out, spec.run_id, bool(todo))
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
    left_out = {f.file for f in tally.failed}
    total = merge_results(plan.out, ((j.rel, plan.expected(j)) for j in plan.jobs if j.rel not in left_out))
    errors = write_errors(plan.out, tally.failed)
    busy = {"read": stats.busy.read, "encode": stats.busy.predict, "write": stats.busy.write}
    return SegmentSummary(len(plan.jobs), tally.segmented, tally.empty, skipped, tally.masks, total,
                          plan.out / RESULTS_NAME, time.perf_counter() - start, busy,
                          tuple(sorted(tally.failed, key=lambda f: f.file)), errors)
