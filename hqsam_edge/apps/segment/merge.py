"""Shards of one ``segment`` run on one OUT: each shard's completion record, and the merge of them all
(``hqsam-edge merge OUT``).

Shards share OUT: each writes its images' files (``OUT/<image path>.json``, distinct per image, so no two
shards write one file) and, instead of ``results.json`` and ``errors.json``, its record when it finishes::

    OUT/.shards/K-of-N.json   {"shard": "K/N", "run": <the model, as .segment.json>,
                               "set": {"images": <in the whole set>, "sha256": <plan.set_digest>},
                               "images": [[<path>, <entries expected or null>], ...],   # this shard's
                               "failed": [{"file": ..., "stage": ..., "error": ...}, ...]}

A shard that starts with work to do removes its own record (and a merged ``results.json`` / ``errors.json``,
no longer true) first, so a record exists only for a shard that finished. ``merge_shards`` writes
``results.json`` and ``errors.json`` once all N records are there and agree (one set, one model), the same
bytes an unsharded run writes; otherwise it names the shards missing.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ...errors import DataError, UsageError
from ..shards import Shard
from .plan import Plan, set_digest
from .results import RESULTS_NAME, SHARDS_DIR, ImageFailure, merge_results, write_errors, write_json

_NAME = re.compile(r"^(\d+)-of-(\d+)\.json$")


@dataclass(frozen=True)
class ShardRecord:
    """What one finished shard wrote: its images (path, entries expected) and those it left out."""

    shard: Shard
    run: str
    set_size: int
    set_digest: str
    images: tuple[tuple[str, int | None], ...]
    failed: tuple[ImageFailure, ...]


def record_path(out: Path, shard: Shard) -> Path:
    return out / SHARDS_DIR / f"{shard.label}.json"


def write_record(plan: Plan, failed: tuple[ImageFailure, ...]) -> Path:
    """The record of ``plan``'s shard, which has just finished with ``failed`` left out; its path."""
    if plan.shard is None:
        raise ValueError("write_record needs a sharded plan")
    path = record_path(plan.out, plan.shard)
    write_json(path, {"shard": str(plan.shard), "run": plan.spec.run_id,
                      "set": {"images": plan.set_size, "sha256": plan.set_digest},
                      "images": [[j.rel, plan.expected(j)] for j in plan.jobs],
                      "failed": [asdict(f) for f in failed]})
    return path


def read_record(path: Path, shard: Shard) -> ShardRecord:
    """A record as ``write_record`` wrote it; ``DataError`` (saying to run the shard again) if it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        record = ShardRecord(shard, str(data["run"]), int(data["set"]["images"]), str(data["set"]["sha256"]),
                             tuple((str(rel), None if n is None else int(n)) for rel, n in data["images"]),
                             tuple(ImageFailure(**f) for f in data["failed"]))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise DataError(f"{path} is not a shard record ({exc}); delete it and run shard {shard} again") from None
    if data.get("shard") != str(shard):
        raise DataError(f"{path} is the record of shard {data.get('shard')}, not {shard}; delete it and run shard "
                        f"{shard} again")
    return record


def _find_records(out: Path) -> tuple[int, dict[int, Path]]:
    """The number of shards the records in ``out`` are for, and the records found by shard index."""
    folder = out / SHARDS_DIR
    found: dict[int, dict[int, Path]] = {}
    if folder.is_dir():
        for path in folder.iterdir():
            if (m := _NAME.match(path.name)) and int(m[1]) < int(m[2]):
                found.setdefault(int(m[2]), {})[int(m[1])] = path
    if not found:
        raise UsageError(f"{folder} holds no shard records: run `hqsam-edge segment --shard K/N --out {out}` for "
                         "every shard K of N first")
    if len(found) > 1:
        counts = ", ".join(f"{n} ({len(found[n])} records)" for n in sorted(found))
        raise UsageError(f"{folder} holds records of runs split into different numbers of shards: {counts}; delete "
                         "the records of the split you no longer use")
    count = next(iter(found))
    return count, found[count]


@dataclass(frozen=True)
class MergeSummary:
    """One merge: the shards, images and masks in ``results``, the images left out (listed in ``errors``)."""

    shards: int
    images: int
    masks: int
    results: Path
    failed: tuple[ImageFailure, ...]
    errors: Path | None
    seconds: float

    def line(self) -> str:
        bad = f"; {len(self.failed)} image(s) left out on errors (see {self.errors})" if self.failed else ""
        return (f"merged {self.shards} shards in {self.seconds:.1f} s: wrote {self.results} ({self.masks} masks, "
                f"{self.images - len(self.failed)} images){bad}")


def _check_agree(records: list[ShardRecord], out: Path) -> list[tuple[str, int | None]]:
    """The whole set's images in image order, once every record is of the same set and model."""
    first = records[0]
    for r in records[1:]:
        if r.run != first.run:
            raise DataError(f"shards {first.shard} and {r.shard} in {out} were run with different models "
                            f"({first.run!r} and {r.run!r}); run every shard with one model")
        if (r.set_size, r.set_digest) != (first.set_size, first.set_digest):
            raise DataError(f"shards {first.shard} and {r.shard} in {out} were run over different image sets "
                            f"({first.set_size} and {r.set_size} images): the images or the boxes changed between "
                            "them; run every shard again (finished images are kept)")
    images = sorted((item for r in records for item in r.images), key=lambda item: item[0])
    if len(images) != first.set_size or set_digest(images) != first.set_digest:
        raise DataError(f"the shards' records in {out} list {len(images)} images, not the set's {first.set_size}; "
                        "run every shard again with the same --shard K/N split (finished images are kept)")
    return images


def merge_shards(out: Path) -> MergeSummary:
    """``OUT/results.json`` and ``OUT/errors.json`` of a run split into shards, once every shard has finished
    (module doc); ``DataError`` naming the shards missing otherwise."""
    start = time.perf_counter()
    out = Path(out)
    if not out.is_dir():
        raise UsageError(f"{out} is not a folder: give the --out folder the shards wrote")
    count, paths = _find_records(out)
    missing = [str(Shard(k, count)) for k in range(count) if k not in paths]
    if missing:
        raise DataError(f"{len(missing)} of {count} shards have not finished in {out}: {', '.join(missing)} (no record "
                        f"in {out / SHARDS_DIR}); run them (each resumes where it stopped), then merge again")
    records = [read_record(paths[k], Shard(k, count)) for k in range(count)]
    images = _check_agree(records, out)
    failed = tuple(sorted((f for r in records for f in r.failed), key=lambda f: f.file))
    left_out = {f.file for f in failed}
    masks = merge_results(out, ((rel, n) for rel, n in images if rel not in left_out))
    errors = write_errors(out, failed)
    return MergeSummary(count, len(images), masks, out / RESULTS_NAME, failed, errors, time.perf_counter() - start)
