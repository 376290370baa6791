"""Batch segmentation of image sets from box prompts, or of everything in them: COCO RLE results, streamed and
resumable.

``segment_images(spec, predictor)`` runs three stages that overlap, joined by
two bounded queues (``spec.queue_size`` images each):

    reader thread     read the image file (``transforms.load_image``), check its boxes
                      against its size, preprocess (resize, normalise, pad)
    calling thread    the Predictor: encoder, then one decoder call for all boxes of the image
    writer thread     RLE-encode the masks, write ``OUT/<image path>.json`` atomically

Images come from a glob (``spec.images``, ``**`` recurses); an image's path is
taken relative to the *image root*, the part of the glob before its first
wildcard (``data/val/**/*.jpg`` -> ``data/val``). Boxes come from a COCO
annotations file or a ``{"file_name": [[x, y, w, h], ...]}`` mapping
(``hqsam_edge.apps.boxes``), matched by that relative path or by base name.

Output, for an image ``sub/a.jpg``: ``OUT/sub/a.jpg.json``, a JSON list of COCO
result entries, one per box in the boxes file's order::

    {"image_id": 7, "file_name": "a.jpg", "category_id": 1,   # as the boxes file has them
     "segmentation": {"size": [h, w], "counts": "..."},   # COCO compressed RLE
     "score": 0.93,                                        # the predicted IoU
     "bbox": [x, y, w, h], "area": 1234,                   # of the mask, pixels
     "prompt_bbox": [x, y, w, h],                          # the box prompt
     "annotation_id": 42}                                  # when the COCO file gave one

(a mapping file has no ids: its images get 1, 2, ... in file order, category 1).
Boxes must lie inside their image, with 1 pixel of slack for rounding; the COCO
file's width/height are checked before any work, and against each image read.
An image with no boxes (none in the file, or not named there) is not read or
encoded: its file holds ``[]``. At the end ``OUT/results.json`` holds every
entry in image order (sorted relative paths), ready for ``COCO.loadRes``; a
run with work to do removes it first, so it exists only after a finished run.

Everything mode (``spec.everything``, the generator's options; no boxes file):
each image goes whole through ``SamAutomaticMaskGenerator`` (``segment_everything``),
one entry per mask found, with its ``stability_score``, ``point_coords`` and
``crop_box``; images get ids 1, 2, ... in image order, category 1.

Resume: a rerun skips every image whose file exists, parses and holds one entry
per box (any number of entries in everything mode; the model and the
generator's options are recorded, and a rerun with others is refused);
temporary files that a killed run left (``.<name>.hqtmp-<owner>.<random>.part``,
``hqsam_edge.owners``) are removed first, those of a run still going are not.
Every file is written under a
temporary name in its folder and renamed, so none is ever half-written.

Bad images (``spec.on_error``, ``segment_errors``): with ``"skip"`` (the
default) an image that cannot be read, or whose boxes are wrong for it, is
noted, left out of its per-image file and of ``results.json``, and listed in
``OUT/errors.json``; the rest of the set is segmented. A skipped image has no
result file, so a rerun (resume) tries it again; ``errors.json`` describes the
last run only (removed when a run starts, written when it finishes having
skipped any). With ``"stop"`` the first bad image ends the run after every
image before it has been written. Other errors (the model, a failed write, an
interruption) always stop the pipeline, all stages at once, and reach the
caller as one ``HQSamEdgeError``; what was written stays for a resume.
"""

from __future__ import annotations

import glob
import json
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..atomic import atomic_write, note_kept, remove_stale, write_text
from ..data import transforms as T
from .. import progress
from ..errors import DataError, UsageError
from ..inputs import ON_ERROR, require_choice
from ..runtime.predictor import Predictor, best_masks
from . import boxes as box_files
from . import rle
from .generator_options import GeneratorOptions
from .segment_errors import ERRORS_NAME, PER_IMAGE, ImageFailure, write_errors

RESULTS_NAME = "results.json"
RUN_NAME = ".segment.json"  # the model that wrote OUT, so that a resume cannot mix two models' masks
_POLL_S = 0.05


@dataclass(frozen=True)
class SegmentSpec:
    """What ``hqsam-edge segment`` does: ``images`` a glob, ``boxes`` a boxes file (None with ``everything``),
    ``out`` a folder."""

    images: str
    boxes: str | None
    out: str
    queue_size: int = 4  # images waiting between two stages
    model: str = ""  # what segments (folder, backend, precision): a rerun with another model is refused
    everything: GeneratorOptions | None = None  # segment everything with these options instead of boxes
    on_error: str = "skip"  # a bad image: "skip" it (OUT/errors.json) or "stop" the run

    @property
    def run_id(self) -> str:
        """What wrote OUT: the model, and in everything mode the generator's options."""
        if self.everything is None:
            return self.model
        return f"{self.model} everything: {self.everything.describe()}".strip()


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


@dataclass(frozen=True)
class _Job:
    rel: str  # POSIX path relative to the image root
    path: Path
    entry: box_files.ImageBoxes | None

    @property
    def boxes(self) -> tuple[box_files.BoxPrompt, ...]:
        return () if self.entry is None else self.entry.boxes


@dataclass(frozen=True)
class _Plan:
    spec: SegmentSpec
    boxes_path: str
    out: Path
    jobs: tuple[_Job, ...]
    failed: tuple[ImageFailure, ...] = ()  # found before any work (their boxes), on_error="skip"

    @property
    def skip(self) -> bool:
        return self.spec.on_error == "skip"

    def needs_model(self, job: _Job) -> bool:
        return self.spec.everything is not None or bool(job.boxes)

    def expected(self, job: _Job) -> int | None:
        """Entries a finished result file of ``job`` holds: one per box; any number in everything mode."""
        return None if self.spec.everything is not None else len(job.boxes)


# -- planning -------------------------------------------------------------------


def find_images(pattern: str, exclude: Path | None = None) -> tuple[Path, list[str]]:
    """Files matching ``pattern`` -> (image root, sorted POSIX paths relative to it).

    The root is the pattern's leading part without wildcards (``*?[``); files
    under ``exclude`` (the output folder) are left out.
    """
    parts = Path(pattern).parts
    static: list[str] = []
    for part in parts:
        if any(c in part for c in "*?["):
            break
        static.append(part)
    if len(static) == len(parts):  # a single file
        static = static[:-1]
    root = Path(*static) if static else Path(".")
    skip = None if exclude is None else exclude.resolve()
    rels = set()
    for name in glob.glob(pattern, recursive=True):
        if not os.path.isfile(name):
            continue
        if skip is not None and Path(name).resolve().is_relative_to(skip):
            continue
        rel = Path(os.path.relpath(name, root)).as_posix()
        if rel.startswith("../"):
            raise UsageError(f"--images {pattern!r}: {name} lies outside the image root {root}; "
                             "put '..' only before the first wildcard")
        rels.add(rel)
    if not rels:
        raise UsageError(f"--images {pattern!r} matches no files (quote the glob so that the shell leaves it alone)")
    return root, sorted(rels)


def output_path(out: Path, rel: str) -> Path:
    """Where the results of image ``rel`` go: ``OUT/<rel>.json`` (folders mirrored)."""
    return out.joinpath(*(rel + ".json").split("/"))


def make_plan(spec: SegmentSpec) -> _Plan:
    """Read the boxes file, find the images and pair them; check what can be checked before any work."""
    if spec.queue_size < 1:
        raise UsageError(f"queue size must be at least 1, not {spec.queue_size}")
    require_choice(spec.on_error, ON_ERROR, "--on-error value")
    out = Path(spec.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder (it is created if missing)")
    if (spec.boxes is None) == (spec.everything is None):
        raise UsageError("give --boxes FILE (box prompts) or --everything (every mask in the images), not both")
    root, rels = find_images(spec.images, exclude=out)
    for name in (RESULTS_NAME, ERRORS_NAME):
        if name.removesuffix(".json") in rels:
            raise UsageError(f"an image named {name.removesuffix('.json')!r} at the image root would overwrite "
                             f"{out / name}; rename it")
    if spec.everything is not None:
        spec.everything.grids()  # bad options fail before any work
        entries = [box_files.ImageBoxes(PurePosixPath(rel).name, i + 1) for i, rel in enumerate(rels)]
        return _Plan(spec, "", out, tuple(_Job(rel, root.joinpath(*rel.split("/")), e) for rel, e in zip(rels, entries)))
    skip = spec.on_error == "skip"
    boxes = box_files.read_boxes_file(spec.boxes, keep_bad_boxes=skip)
    matched = box_files.match_images(boxes, rels)
    failed = []
    for rel, entry in matched.items():  # sizes the COCO file gives: check boxes now, before any output
        try:
            if entry.problem is not None:
                raise DataError(entry.problem)
            if entry.width is not None and entry.height is not None:
                box_files.check_boxes_inside(entry, entry.width, entry.height, boxes.path, rel)
        except DataError as exc:
            if not skip:
                raise
            failed.append(ImageFailure.of(rel, exc))
    jobs = tuple(_Job(rel, root.joinpath(*rel.split("/")), matched.get(rel)) for rel in rels)
    return _Plan(spec, boxes.path, out, jobs, tuple(failed))


def read_result(path: Path, n_boxes: int | None) -> list[dict[str, Any]] | None:
    """The entries of a finished image file, or None if missing, unreadable or not one entry per box (any number
    with ``n_boxes`` None)."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(entries, list) or (n_boxes is not None and len(entries) != n_boxes):
        return None
    for e in entries:
        seg = e.get("segmentation") if isinstance(e, dict) else None
        if not isinstance(seg, dict) or not isinstance(seg.get("counts"), str) or not isinstance(seg.get("size"), list):
            return None
    return entries


def check_same_model(out: Path, model: str) -> None:
    """``UsageError`` if ``out`` holds results written by another model than ``model``."""
    try:
        recorded = json.loads((out / RUN_NAME).read_text()).get("model", "")
    except (OSError, ValueError, AttributeError):
        return  # a new folder (or one from before this record): nothing to compare
    if model and recorded and recorded != model:
        raise UsageError(f"{out} holds masks from another model ({recorded}); resuming with {model} would mix "
                         "them: use another --out, or delete the folder to start again")


def remove_stale_temps(out: Path) -> int:
    """Delete the temporary files that a killed run left in ``out`` (not those of a live one); how many."""
    return len(remove_stale(out, recursive=True))


# -- files ------------------------------------------------------------------------


def _write_atomic(path: Path, write: Callable[[Any], None]) -> None:
    """``write(text_file)`` under a temporary name in ``path``'s folder, then rename onto ``path``."""
    def write_file(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            write(f)

    atomic_write(path, write_file, make_parent=True)


def _dump_entries(f, entries) -> None:
    """A JSON list, one entry a line."""
    f.write("[")
    for i, e in enumerate(entries):
        f.write(("," if i else "") + "\n" + json.dumps(e, separators=(",", ":")))
    f.write("\n]\n")


def result_entries(job: _Job, masks: np.ndarray, scores: np.ndarray) -> list[dict[str, Any]]:
    """Masks ``[K,H,W]`` bool and scores ``[K]`` of ``job``'s K boxes -> COCO result entries."""
    entries = []
    for box, mask, score in zip(job.boxes, masks, scores):
        encoded, area, bbox = rle.encode_with_stats(mask)
        e = {"image_id": job.entry.image_id, "file_name": job.entry.file_name,  # type: ignore[union-attr]
             "category_id": box.category_id, "segmentation": encoded, "score": float(score),
             "bbox": bbox, "area": area, "prompt_bbox": list(box.bbox)}
        if box.annotation_id is not None:
            e["annotation_id"] = box.annotation_id
        entries.append(e)
    return entries


# -- stages ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Read:
    tensor: np.ndarray  # [1,3,S,S] encoder input
    original_size: tuple[int, int]
    input_size: tuple[int, int]


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_DONE = object()


def _read(job: _Job, boxes_path: str, image_size: int) -> _Read:
    image = T.load_image(str(job.path))
    h, w = image.shape[:2]
    entry: box_files.ImageBoxes = job.entry  # type: ignore[assignment]  # only jobs with boxes are read
    if entry.width is not None and entry.height is not None and (entry.width, entry.height) != (w, h):
        raise DataError(f"{boxes_path}: image {job.rel} is {w}x{h} but the boxes file says "
                             f"{entry.width}x{entry.height}; check that it is the right image")
    box_files.check_boxes_inside(entry, w, h, boxes_path, job.rel)
    tensor, input_size = T.preprocess_image(image, image_size)
    return _Read(tensor, (h, w), input_size)


def _predict(predictor: Predictor, job: _Job, read: _Read) -> tuple[np.ndarray, np.ndarray]:
    """All boxes of one image in one decoder call -> masks ``[K,H,W]`` bool, scores ``[K]``."""
    predictor.set_image_tensor(read.tensor, read.original_size, read.input_size)
    masks, scores, _ = predictor.predict_boxes(np.array([b.xyxy for b in job.boxes], dtype=np.float64))
    return best_masks(masks, scores)


class _BoxMode:
    """What each stage does with an image in box mode: read + preprocess, one decoder call, COCO entries."""

    def __init__(self, plan: _Plan, predictor: Predictor | None) -> None:
        self.plan, self.predictor = plan, predictor
        self.image_size = predictor.info.image_size if predictor is not None else 0

    def read(self, job: _Job) -> _Read:
        return _read(job, self.plan.boxes_path, self.image_size)

    def predict(self, job: _Job, read: _Read) -> tuple[np.ndarray, np.ndarray]:
        return _predict(self.predictor, job, read)  # type: ignore[arg-type]

    def entries(self, job: _Job, result: tuple[np.ndarray, np.ndarray]) -> list[dict[str, Any]]:
        return result_entries(job, *result)


def _mode(plan: _Plan, predictor: Predictor | None) -> Any:
    if plan.spec.everything is None or predictor is None:
        return _BoxMode(plan, predictor)
    from .segment_everything import EverythingMode

    return EverythingMode(predictor, plan.spec.everything)


def _put(q: queue.Queue, item: Any, alive: Callable[[], bool]) -> bool:
    """Put, waiting while the consumer is ``alive()``; False if it is gone."""
    while True:
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            if not alive():
                return False


def _get(q: queue.Queue, alive: Callable[[], bool]) -> Any:
    """Get, waiting while the producer is ``alive()``."""
    while True:
        try:
            return q.get(timeout=_POLL_S)
        except queue.Empty:
            if not alive():
                try:
                    return q.get_nowait()
                except queue.Empty:
                    return _Failed(RuntimeError("the image reader thread ended without finishing"))


class _Pipeline:
    """``jobs`` through reader thread -> the calling thread's predictor -> writer thread (see the module doc)."""

    def __init__(self, plan: _Plan, jobs: list[_Job], predictor: Predictor | None, busy: dict[str, float],
                 on_written: Callable[[_Job, int], None], on_failed: Callable[[ImageFailure], None]) -> None:
        self.plan, self.jobs, self.busy, self.on_written, self.on_failed = plan, jobs, busy, on_written, on_failed
        self.mode = _mode(plan, predictor)
        self.q_in: queue.Queue = queue.Queue(plan.spec.queue_size)
        self.q_out: queue.Queue = queue.Queue(plan.spec.queue_size)
        self.stop = threading.Event()  # set: the reader stops producing
        self.writer_errors: list[BaseException] = []

    def _reader(self) -> None:
        for job in self.jobs:
            if self.stop.is_set():
                return
            t0 = time.perf_counter()
            try:
                item: Any = (job, self.mode.read(job) if self.plan.needs_model(job) else None)
            except BaseException as exc:  # handed on in order: images before it still get written
                skip = self.plan.skip and isinstance(exc, PER_IMAGE)  # a bad image; anything else stops the run
                item = ImageFailure.of(job.rel, exc) if skip else _Failed(exc)
            self.busy["read"] += time.perf_counter() - t0
            if not _put(self.q_in, item, lambda: not self.stop.is_set()) or isinstance(item, _Failed):
                return
        _put(self.q_in, _DONE, lambda: not self.stop.is_set())

    def _writer(self) -> None:
        try:
            while (item := self.q_out.get()) is not _DONE:
                job, result = item
                t0 = time.perf_counter()
                entries = [] if result is None else self.mode.entries(job, result)
                _write_atomic(output_path(self.plan.out, job.rel), lambda f: _dump_entries(f, entries))
                self.busy["write"] += time.perf_counter() - t0
                self.on_written(job, len(entries))
        except BaseException as exc:
            self.writer_errors.append(exc)
            self.stop.set()

    def _model(self, reader: threading.Thread, writer: threading.Thread) -> BaseException | None:
        """The calling thread's stage; the reader's error, if it sent one."""
        while not self.writer_errors:
            item = _get(self.q_in, reader.is_alive)
            if item is _DONE:
                return None
            if isinstance(item, _Failed):
                return item.error
            if isinstance(item, ImageFailure):  # here, in the calling thread: its progress notes reach the caller
                self.on_failed(item)
                continue
            job, read = item
            result = None
            if read is not None:
                t0 = time.perf_counter()
                result = self.mode.predict(job, read)
                self.busy["encode"] += time.perf_counter() - t0
            if not _put(self.q_out, (job, result), writer.is_alive):
                return None
        return None

    def run(self) -> None:
        """Run every job; raise the first error after the stages stopped."""
        reader = threading.Thread(target=self._reader, name="segment-reader", daemon=True)
        writer = threading.Thread(target=self._writer, name="segment-writer", daemon=True)
        reader.start()
        writer.start()
        try:
            failed = self._model(reader, writer)
        finally:  # on any exit: stop the reader, let the writer finish what is queued
            self.stop.set()
            _put(self.q_out, _DONE, writer.is_alive)
            reader.join()
            writer.join()
        if self.writer_errors:
            raise self.writer_errors[0]
        if failed is not None:
            raise failed


def _merge(plan: _Plan, failed: set[str]) -> int:
    """Write ``OUT/results.json``: every image's entries in image order (not the ``failed`` ones); the number of
    entries."""
    total = 0

    def write(f) -> None:
        nonlocal total
        f.write("[")
        for job in plan.jobs:
            if job.rel in failed:
                continue
            entries = read_result(output_path(plan.out, job.rel), plan.expected(job))
            if entries is None:
                raise DataError(f"results of {job.rel} are missing from {plan.out}; run segment again")
            for e in entries:
                f.write(("," if total else "") + "\n" + json.dumps(e, separators=(",", ":")))
                total += 1
        f.write("\n]\n")

    _write_atomic(plan.out / RESULTS_NAME, write)
    return total


def segment_images(spec: SegmentSpec, predictor: Predictor | Callable[[], Predictor]) -> SegmentSummary:
    """Segment every image ``spec.images`` matches with its boxes from ``spec.boxes`` into ``spec.out``.

    ``predictor`` may be a zero-argument callable: it is called only when some
    image still needs the model (after the boxes file and images have been
    checked), so a bad boxes file fails fast and a finished run costs no model load. Bad images: see
    ``spec.on_error`` (the module doc); the summary lists those skipped.
    """
    start = time.perf_counter()
    plan = make_plan(spec)
    out = plan.out
    check_same_model(out, spec.run_id)
    failed = list(plan.failed)
    refused = {f.file for f in failed}
    todo = [j for j in plan.jobs
            if j.rel not in refused and read_result(output_path(out, j.rel), plan.expected(j)) is None]
    skipped = len(plan.jobs) - len(todo) - len(refused)
    if any(plan.needs_model(j) for j in todo) and not isinstance(predictor, Predictor):
        predictor = predictor()  # before OUT is touched: a model that fails to open leaves nothing behind
    try:
        out.mkdir(parents=True, exist_ok=True)
        if spec.run_id and not (out / RUN_NAME).is_file():
            write_text(out / RUN_NAME, json.dumps({"model": spec.run_id}) + "\n")
        remove_stale_temps(out)
        if todo:  # results.json exists only after a run that finished
            (out / RESULTS_NAME).unlink(missing_ok=True)
        (out / ERRORS_NAME).unlink(missing_ok=True)  # errors.json tells of the last run only
    except OSError as exc:
        raise UsageError(f"cannot prepare --out folder {out}: {exc.strerror or exc}") from None
    busy = {"read": 0.0, "encode": 0.0, "write": 0.0}
    counts = {"segmented": 0, "empty": 0, "masks": 0}

    with progress.stage("segment", total=len(plan.jobs), unit="image", initial=skipped) as bar:

        def on_written(job: _Job, n: int) -> None:
            counts["segmented" if n else "empty"] += 1
            counts["masks"] += n
            bar.advance(1, detail=f"{counts['masks']} masks")

        def on_failed(failure: ImageFailure) -> None:
            failed.append(failure)
            progress.note(failure.line())
            bar.advance(1, detail=f"{counts['masks']} masks")

        for failure in plan.failed:
            progress.note(failure.line())
            bar.advance(1)
        try:
            if todo:
                _Pipeline(plan, todo, predictor if isinstance(predictor, Predictor) else None, busy, on_written,
                          on_failed).run()
        except BaseException:
            note_kept(f"kept the {skipped + counts['segmented'] + counts['empty']} image result(s) written in {out} "
                      "(run again to resume)")
            raise
    total = _merge(plan, {f.file for f in failed})
    errors = write_errors(out, failed)
    return SegmentSummary(len(plan.jobs), counts["segmented"], counts["empty"], skipped, counts["masks"], total,
                          out / RESULTS_NAME, time.perf_counter() - start, busy,
                          tuple(sorted(failed, key=lambda f: f.file)), errors)
