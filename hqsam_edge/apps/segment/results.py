"""What ``hqsam-edge segment`` writes in OUT, and reads back to resume.

    OUT/<image path>.json   one image's COCO result entries, a JSON list (``[]``: no boxes)
    OUT/results.json        every image's entries in image order (``merge_results``), after a finished run only
    OUT/.segment.json       ``{"model": ...}``: what wrote OUT, so that a resume cannot mix two models' masks
    OUT/errors.json         the images the last run skipped (``ImageFailure``), when it skipped any
    OUT/.shards/K-of-N.json a shard's completion record instead of the two above (``apps.segment.merge``)

Every file goes through ``write_json``: under a temporary name in its folder, renamed into place
(``hqsam_edge.atomic``), so none is ever half-written; lists one item a line. What a file holds, and when a
bad image is skipped, is in the package doc (``hqsam_edge.apps.segment``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from ...atomic import atomic_create, atomic_write, remove_stale
from ...errors import DataError, ImageError, UsageError

RESULTS_NAME = "results.json"
ERRORS_NAME = "errors.json"
RUN_NAME = ".segment.json"
SHARDS_DIR = ".shards"  # the shards' completion records (``apps.segment.merge``)
PER_IMAGE = (ImageError, DataError)  # what ``--on-error skip`` skips; anything else stops the run

Entry = dict[str, object]  # one COCO result entry, as JSON has it


# -- the one JSON writer ------------------------------------------------------------


def _dump(f: TextIO, value: Mapping[str, object] | Iterable[object]) -> int:
    if isinstance(value, Mapping):
        f.write(json.dumps(value) + "\n")
        return 1
    n = 0
    f.write("[")
    for item in value:
        f.write(("," if n else "") + "\n" + json.dumps(item, separators=(",", ":")))
        n += 1
    f.write("\n]\n")
    return n


def write_json(path: Path, value: Mapping[str, object] | Iterable[object]) -> int:
    """``value`` into ``path`` atomically (its folder made if missing): a mapping as one line, anything else
    as a JSON list, one item a line, taken from the iterable as it is written (a generator is never held
    whole). The number of items (1 for a mapping)."""
    count = 0

    def write(tmp: str) -> None:
        nonlocal count
        with open(tmp, "w", encoding="utf-8") as f:
            count = _dump(f, value)

    atomic_write(path, write, make_parent=True)
    return count


# -- per-image files and results.json ------------------------------------------------


def output_path(out: Path, rel: str) -> Path:
    """Where the results of image ``rel`` go: ``OUT/<rel>.json`` (folders mirrored)."""
    return out.joinpath(*(rel + ".json").split("/"))


def write_image(out: Path, rel: str, entries: list[Entry]) -> int:
    """``OUT/<rel>.json``: the entries of image ``rel``; how many."""
    return write_json(output_path(out, rel), entries)


def read_result(path: Path, n_boxes: int | None) -> list[Entry] | None:
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


def read_results(out: Path, images: Iterable[tuple[str, int | None]]) -> Iterator[Entry]:
    """The entries of each image ``(path, entries expected or None)`` in the order given, read back from their
    files; ``DataError`` if one is missing."""
    for rel, expected in images:
        found = read_result(output_path(out, rel), expected)
        if found is None:
            raise DataError(f"results of {rel} are missing from {out}; run segment again")
        yield from found


def merge_results(out: Path, images: Iterable[tuple[str, int | None]]) -> int:
    """``OUT/results.json``: the entries of each image (``read_results``) in the order given; how many."""
    return write_json(out / RESULTS_NAME, read_results(out, images))


# -- the resume record ----------------------------------------------------------------


def check_same_model(out: Path, model: str) -> None:
    """``UsageError`` if ``out`` holds results written by another model than ``model``."""
    try:
        recorded = json.loads((out / RUN_NAME).read_text()).get("model", "")
    except (OSError, ValueError, AttributeError):
        return  # a new folder (or one from before this record): nothing to compare
    if model and recorded and recorded != model:
        raise UsageError(f"{out} holds masks from another model ({recorded}); resuming with {model} would mix "
                         "them: use another --out, or delete the folder to start again")


def record_model(out: Path, model: str) -> None:
    """``OUT/.segment.json`` naming ``model``, unless OUT has one already; then ``check_same_model`` again.

    Created at once or not at all (``atomic_create``): of shards starting together on one OUT exactly one
    writes it, and the others compare their model with what it wrote."""
    if not model:
        return
    if not atomic_create(out / RUN_NAME, lambda tmp: Path(tmp).write_text(json.dumps({"model": model}) + "\n")):
        check_same_model(out, model)


def remove_stale_temps(out: Path) -> int:
    """Delete the temporary files that a killed run left in ``out`` (not those of a live one); how many."""
    return len(remove_stale(out, recursive=True))


# -- errors.json ------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageFailure:
    """An image a run skipped: its path relative to the image root, the stage that refused it, the reason.

    ``stage`` is ``read`` (the file cannot be read: missing, truncated, not an image; ``ImageError``) or
    ``boxes`` (one of its boxes is wrong for it: not 4 numbers, no area, outside the image, or the size the
    boxes file gives is not the image's; ``DataError``).
    """

    file: str
    stage: str
    error: str  # one line

    @classmethod
    def of(cls, rel: str, exc: BaseException) -> ImageFailure:
        stage = "read" if isinstance(exc, ImageError) else "boxes"
        return cls(rel, stage, " ".join(str(exc).split()))

    def line(self) -> str:
        return f"skipped {self.file} ({self.stage}): {self.error}"


def write_errors(out: Path, failures: Iterable[ImageFailure]) -> Path | None:
    """``OUT/errors.json`` with ``failures`` in image order::

        [{"file": "sub/a.jpg", "stage": "read", "error": "cannot read image ...: image file is truncated ..."}]

    removed if there are none. Its path, or None."""
    path = out / ERRORS_NAME
    ordered = sorted(failures, key=lambda f: f.file)
    if not ordered:
        path.unlink(missing_ok=True)
        return None
    write_json(path, (asdict(f) for f in ordered))
    return path
