"""The size and sha256 of the files a folder names, and the check that each is still the file recorded.

A record is ``{"size": bytes, "sha256": hex}``, plus ``"external_data": [names]`` for an ONNX graph whose
tensors live in other files (``onnx_files.external_data_files``). An artifact folder's manifest holds one per
file (``Manifest.files``: graphs, their external data, precision graphs, engines, calibration caches); a Triton
repository holds one per copied file (``serve.triton``).

Checking hashes a file unless the verified stamp (``.verified.json`` in the folder) says it is unchanged since
it last matched its record: the same size, modification time, change time, inode and device. A file written
again in place gets new times; a file replaced or copied is another inode; ``touch`` can set a modification
time back, but not the change time. So a warm check costs a ``stat`` per file and a cold one a read of every
byte (README, "Artifact folders"). The stamp is a cache, written when it can be (a read-only folder is
checked cold every time); it vouches only for files that matched the record it was made against.
"""

from __future__ import annotations

import json
import os
import stat as st_mode
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import write_text
from ..digest import sha256_file
from ..errors import UsageError

STAMP = ".verified.json"
OK, CHANGED, MISSING, UNRECORDED, RECORDED = "ok", "changed", "missing", "not recorded", "recorded"
Records = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class FileCheck:
    """One file against its record: ``status`` one of ``ok``, ``changed``, ``missing``, ``not recorded`` (no
    record to check against) or ``recorded`` (``verify --update`` has just recorded it)."""

    name: str
    status: str
    size: int | None = None  # on disk
    sha256: str | None = None  # on disk; None where it was not read (missing, or the size already differs)
    recorded: dict[str, Any] | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status in (OK, RECORDED)

    def problem(self, folder: Path, records_in: str = "manifest.json", fix: str | None = None) -> str:
        """One line: which file, what differs, how to fix it."""
        path, rec = folder / self.name, self.recorded or {}
        if self.status == UNRECORDED:
            fix = fix or f"record it with `hqsam-edge verify {folder} --update` if it is the file you made"
            return f"{path} has no size and sha256 in {records_in}: {fix}"
        fix = fix or (f"copy the folder again, or export / build it again (`hqsam-edge verify {folder}` "
                      "checks every file)")
        if self.status == MISSING:
            return f"{path} is missing ({records_in} records {rec.get('size')} bytes): {fix}"
        if self.detail:
            what = self.detail
        elif self.size != rec.get("size"):
            what = f"{self.size} bytes, recorded {rec.get('size')}"
        else:
            what = f"sha256 {self.sha256[:16]}..., recorded {str(rec.get('sha256'))[:16]}... (same size)"
        return f"{path} is not the file {records_in} records ({what}): it was changed or replaced; {fix}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.name, "status": self.status, "size": self.size, "sha256": self.sha256,
                "recorded_size": (self.recorded or {}).get("size"),
                "recorded_sha256": (self.recorded or {}).get("sha256")}


def _key(info: os.stat_result) -> list[int]:
    return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev]


class Stamp:
    """``.verified.json``: each file's ``stat`` key and sha256 when it last matched its record."""

    def __init__(self, path: Path | None) -> None:
        self.path, self.entries, self.changed = path, {}, False
        if path is not None:
            try:
                self.entries = dict(json.loads(path.read_text())["files"])
            except (OSError, ValueError, KeyError, TypeError):
                self.entries = {}

    def known(self, name: str, info: os.stat_result) -> str | None:
        """The sha256 the file had when it was verified, if it has not changed since."""
        entry = self.entries.get(name)
        return entry[-1] if isinstance(entry, list) and entry[:-1] == _key(info) else None

    def put(self, name: str, info: os.stat_result, sha256: str) -> None:
        self.entries[name] = [*_key(info), sha256]
        self.changed = True

    def save(self) -> None:
        if self.path is None or not self.changed:
            return
        try:
            write_text(self.path, json.dumps({"format": 1, "files": self.entries}, indent=1) + "\n")
        except (UsageError, OSError):
            pass  # a read-only folder: checked cold next time
        self.changed = False


def expand(records: Records, names: Iterable[str]) -> list[str]:
    """``names`` with the external data files their records name, each once."""
    out: dict[str, None] = {}
    for name in names:
        out[name] = None
        out.update(dict.fromkeys((records.get(name) or {}).get("external_data", [])))
    return list(out)


def _check_one(folder: Path, name: str, record: dict[str, Any] | None, stamp: Stamp, rehash: bool) -> FileCheck:
    try:
        info = os.stat(folder / name)
    except OSError:
        return FileCheck(name, MISSING, recorded=record)
    if not st_mode.S_ISREG(info.st_mode):
        return FileCheck(name, CHANGED if record else UNRECORDED, recorded=record, detail="not a regular file")
    if record is None:
        return FileCheck(name, UNRECORDED, info.st_size, sha256_file(folder / name) if rehash else None)
    if info.st_size != record.get("size"):
        return FileCheck(name, CHANGED, info.st_size, sha256_file(folder / name) if rehash else None, record)
    sha = None if rehash else stamp.known(name, info)
    if sha != record.get("sha256"):
        sha = sha256_file(folder / name)
    if sha != record.get("sha256"):
        return FileCheck(name, CHANGED, info.st_size, sha, record)
    if stamp.known(name, info) != sha:
        stamp.put(name, info, sha)
    return FileCheck(name, OK, info.st_size, sha, record)


def check(folder: str | Path, records: Records, names: Iterable[str], *, stamp: str | Path | None = STAMP,
          rehash: bool = False) -> list[FileCheck]:
    """Each file of ``names`` (with its external data) in ``folder`` against ``records``. ``stamp``: the
    verified stamp's path (relative to ``folder``; None: none); ``rehash``: read every byte even where the
    stamp vouches for a file (``hqsam-edge verify``)."""
    folder = Path(folder)
    verified = Stamp(None if stamp is None else folder / stamp)
    results = [_check_one(folder, name, records.get(name), verified, rehash) for name in expand(records, names)]
    verified.save()
    return results


def record(folder: str | Path, names: Iterable[str]) -> Records:
    """Records of ``names`` in ``folder`` as they are now, ONNX graphs with the external data they name (also
    recorded); the stamp is updated, so that the first check of these files is a warm one."""
    from .onnx_files import external_data_files

    folder = Path(folder)
    verified = Stamp(folder / STAMP)
    out: Records = {}
    todo = list(names)
    while todo:
        name = todo.pop(0)
        if name in out:
            continue
        info, sha = os.stat(folder / name), sha256_file(folder / name)
        out[name] = {"size": info.st_size, "sha256": sha}
        if name.endswith(".onnx") and (data := external_data_files(folder / name)):
            out[name]["external_data"] = data
            todo += data
        verified.put(name, info, sha)
    verified.save()
    return out
