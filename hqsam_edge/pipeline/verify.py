"""``hqsam-edge verify DIR``: every file an artifact folder's manifest records or names, read and checked.

``verify_folder(folder)`` hashes every file (the verified stamp is not trusted
here, and is refreshed): the artifacts' files, their graphs' external data and
the recorded calibration caches. ``update=True`` records the files that have
no record yet (a folder written by an older hqsam-edge), as they are now; a
file whose record it contradicts stays a mismatch: nothing rewrites a record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import ArtifactError
from ..export import integrity
from ..export.manifest import MANIFEST, read_manifest, remove_stale_temporaries
from ..export.onnx_files import external_data_files
from ..tables import Table


@dataclass(frozen=True)
class VerifyReport:
    folder: Path
    rows: list[integrity.FileCheck]

    @property
    def problems(self) -> list[integrity.FileCheck]:
        return [r for r in self.rows if not r.ok]

    def table(self) -> Table:
        """file, size, sha256, status: one row per file."""
        cells = [(r.name, "-" if r.size is None else str(r.size), r.sha256 or "-", r.status) for r in self.rows]
        return Table(("file", "size", "sha256", "status"), cells, title=f"{self.folder}", numeric=frozenset({1}))

    def to_json(self) -> str:
        return json.dumps({"folder": str(self.folder), "ok": not self.problems,
                           "files": [r.to_dict() for r in self.rows]}, indent=1)

    def raise_for_problems(self) -> None:
        """``ArtifactError``: which files fail, and what to do."""
        if not self.problems:
            return
        names = ", ".join(f"{r.name} ({r.status})" for r in self.problems)
        fix = (f"record them with `hqsam-edge verify {self.folder} --update` if they are the files you made"
               if all(r.status == integrity.UNRECORDED for r in self.problems)
               else "copy the folder again, or export / build it again")
        raise ArtifactError(f"{len(self.problems)} of {len(self.rows)} files in {self.folder} do not match "
                            f"{MANIFEST}: {names}; {fix}")


def named_files(folder: Path, manifest) -> list[str]:
    """What the folder must hold: every recorded file, every artifact's files and their graphs' external data
    (read from the graphs where no record names it)."""
    records = manifest.files or {}
    names = dict.fromkeys(records)
    for artifact in manifest.artifacts:
        for name in artifact.files.values():
            names[name] = None
            if name not in records and name.endswith(".onnx") and (folder / name).is_file():
                names.update(dict.fromkeys(external_data_files(folder / name)))
    return integrity.expand(records, names)


def verify_folder(folder: str | Path, *, update: bool = False) -> VerifyReport:
    """Check every file of ``folder`` against its manifest; ``update``: first record those without a record."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    remove_stale_temporaries(folder)  # what a killed process left: no file of the manifest's
    names = named_files(folder, manifest)
    recorded: list[str] = []
    if update:
        recorded = [n for n in names if n not in (manifest.files or {}) and (folder / n).is_file()]
        if recorded or manifest.files is None:
            manifest.record_files(folder, recorded)
            manifest.write(folder)
    rows = integrity.check(folder, manifest.files or {}, names, rehash=True)
    rows = [integrity.FileCheck(r.name, integrity.RECORDED, r.size, r.sha256, r.recorded) if r.name in recorded
            else r for r in rows]
    return VerifyReport(folder, rows)
