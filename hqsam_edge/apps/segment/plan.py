"""What a ``segment`` run will do, decided before any work: the images, their boxes, and what a resume skips.

``make_plan`` checks everything that can be checked up front (the options, the glob, the boxes file, the
boxes against the sizes a COCO file gives), so that a bad input fails before OUT is touched or a model
opened; ``Plan.todo`` is the images still to do (those without a finished result file).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ...errors import DataError, UsageError
from ...inputs import ON_ERROR, require_choice
from .. import boxes as box_files
from ..detector import DetectorSpec, check_graph, graph_identity
from ..generator_options import GeneratorOptions
from ..shards import Shard
from .results import ERRORS_NAME, RESULTS_NAME, SHARDS_DIR, ImageFailure, output_path, read_result



@dataclass(frozen=True)
class RayOptions:
    """Where and how wide: a cluster ``address`` (None: a local Ray for the run), ``actors`` each holding one
    Predictor and reserving ``gpus_per_actor`` of a GPU, ``batch_size`` images handed to an actor at once."""

    address: str | None = None
    actors: int = 1
    gpus_per_actor: float = 0.0
    batch_size: int = 4

    def __post_init__(self) -> None:
        if self.actors < 1:
            raise UsageError(f"--ray-actors must be at least 1, not {self.actors}")
        if self.gpus_per_actor < 0:
            raise UsageError(f"--ray-gpus-per-actor must be 0 or more, not {self.gpus_per_actor}")
        if self.batch_size < 1:
            raise UsageError(f"Ray batch size must be at least 1, not {self.batch_size}")


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
    detector: str | None = None  # an ONNX detector graph whose boxes prompt each image, instead of boxes
    detector_options: DetectorSpec = DetectorSpec()  # its score threshold, classes ... (``every`` unused)
    shard: Shard | None = None  # only this shard's images (``apps.shards``); a record in OUT/.shards, no results.json
    ray: RayOptions | None = None  # the images through Ray Data actors (``ray_runner``) instead of this process

    @property
    def run_id(self) -> str:
        """What wrote OUT: the model, and in everything mode the generator's options, in detector mode the
        detector (its file's sha256) and its options."""
        if self.detector is not None:
            return f"{self.model} detector: {graph_identity(self.detector)} {self.detector_options.describe()}".strip()
        if self.everything is None:
            return self.model
        return f"{self.model} everything: {self.everything.describe()}".strip()


@dataclass(frozen=True)
class Job:
    """One image: its POSIX path relative to the image root, its file, its boxes (None: not in the file)."""

    rel: str
    path: Path
    entry: box_files.ImageBoxes | None

    @property
    def boxes(self) -> tuple[box_files.BoxPrompt, ...]:
        return () if self.entry is None else self.entry.boxes


@dataclass(frozen=True)
class Plan:
    spec: SegmentSpec
    boxes_path: str  # the boxes file as named in messages ("" in everything mode)
    out: Path
    jobs: tuple[Job, ...]  # every image (of the shard), in image order
    failed: tuple[ImageFailure, ...] = ()  # refused before any work (their boxes), with on_error="skip"
    set_size: int = 0  # images in the whole set (every shard)
    set_digest: str = ""  # of the whole set: its images and the entries each expects (``set_digest``)

    @property
    def shard(self) -> Shard | None:
        return self.spec.shard

    @property
    def skip(self) -> bool:
        return self.spec.on_error == "skip"

    @property
    def any_number(self) -> bool:
        """Whether an image has any number of entries (everything and detector modes), not one per box."""
        return self.spec.everything is not None or self.spec.detector is not None

    def needs_model(self, job: Job) -> bool:
        return self.any_number or bool(job.boxes)

    def expected(self, job: Job) -> int | None:
        """Entries a finished result file of ``job`` holds: one per box; any number in everything / detector
        mode."""
        return None if self.any_number else len(job.boxes)

    def todo(self) -> tuple[Job, ...]:
        """The images still to do: not refused, and without a finished result file (from an earlier run)."""
        refused = {f.file for f in self.failed}
        return tuple(j for j in self.jobs
                     if j.rel not in refused and read_result(output_path(self.out, j.rel), self.expected(j)) is None)


def set_digest(images: Iterable[tuple[str, int | None]]) -> str:
    """sha256 of an image set: each image's path and entries expected (None: any number), in the order given.
    Shards of one set agree on it; a set that changed between two shards' runs does not."""
    h = hashlib.sha256()
    for rel, expected in images:
        h.update(json.dumps([rel, expected]).encode() + b"\n")
    return h.hexdigest()


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


def _check_spec(spec: SegmentSpec) -> str | GeneratorOptions | DetectorSpec:
    """The options, checked: the boxes file, the everything mode's options, or the detector's (its graph's
    layout checked); exactly one is given."""
    if spec.queue_size < 1:
        raise UsageError(f"queue size must be at least 1, not {spec.queue_size}")
    require_choice(spec.on_error, ON_ERROR, "--on-error value")
    out = Path(spec.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder (it is created if missing)")
    if sum(x is not None for x in (spec.boxes, spec.everything, spec.detector)) != 1:
        raise UsageError("give --boxes FILE (box prompts) or --everything (every mask in the images) or --detector "
                         "D.onnx (a detector's boxes), one of them")
    if spec.detector is not None:
        check_graph(spec.detector)
        return spec.detector_options
    return spec.boxes if spec.boxes is not None else spec.everything  # type: ignore[return-value]


def make_plan(spec: SegmentSpec) -> Plan:
    """Read the boxes file, find the images and pair them; check what can be checked before any work."""
    prompts = _check_spec(spec)
    out = Path(spec.out)
    root, rels = find_images(spec.images, exclude=out)
    for name in (RESULTS_NAME, ERRORS_NAME):
        if name.removesuffix(".json") in rels:
            raise UsageError(f"an image named {name.removesuffix('.json')!r} at the image root would overwrite "
                             f"{out / name}; rename it")
    if any(rel.startswith(SHARDS_DIR + "/") for rel in rels):
        raise UsageError(f"images in a folder {SHARDS_DIR!r} at the image root would mix with the shards' records "
                         f"in {out / SHARDS_DIR}; rename it")
    if isinstance(prompts, (GeneratorOptions, DetectorSpec)):  # everything / detector: ids 1, 2, ... in order
        if isinstance(prompts, GeneratorOptions):
            prompts.grids()  # bad options fail before any work
        named = (box_files.ImageBoxes(PurePosixPath(rel).name, i + 1) for i, rel in enumerate(rels))
        jobs = tuple(Job(rel, root.joinpath(*rel.split("/")), e) for rel, e in zip(rels, named))
        return _sharded(Plan(spec, "", out, jobs))
    skip = spec.on_error == "skip"
    boxes = box_files.read_boxes_file(prompts, keep_bad_boxes=skip)
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
    jobs = tuple(Job(rel, root.joinpath(*rel.split("/")), matched.get(rel)) for rel in rels)
    return _sharded(Plan(spec, boxes.path, out, jobs, tuple(failed)))


def _sharded(plan: Plan) -> Plan:
    """``plan`` with the whole set's size and digest, and only its shard's images (all without a shard)."""
    shard = plan.spec.shard
    digest = set_digest((j.rel, plan.expected(j)) for j in plan.jobs)
    jobs = plan.jobs if shard is None else tuple(j for j in plan.jobs if shard.owns(j.rel))
    failed = plan.failed if shard is None else tuple(f for f in plan.failed if shard.owns(f.file))
    return Plan(plan.spec, plan.boxes_path, plan.out, jobs, failed, len(plan.jobs), digest)
