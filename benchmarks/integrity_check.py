"""What the file check costs when a folder is opened: warm (the verified stamp vouches for unchanged files: a
``stat`` each) and cold (no stamp: every byte read and hashed), on one artifact folder.

Exports the folder first (random weights, unverified: the graphs are what is measured) unless it exists;
the cold runs read files the page cache already holds, as a second open of a folder does (a first read
from disk adds the disk's time).

    python benchmarks/integrity_check.py --backbone vit_b --out /tmp/hqsam_vitb --runs 7
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hqsam_edge.export import integrity
from hqsam_edge.export.manifest import read_manifest
from hqsam_edge.pipeline.export import ExportSpec, export_artifacts
from hqsam_edge.timing import time_calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="vit_b")
    parser.add_argument("--out", default="/tmp/hqsam_vitb")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    folder = Path(args.out)
    if not (folder / "manifest.json").is_file():
        export_artifacts(ExportSpec(backbone=args.backbone, random_weights=True, out=str(folder), verify=False))
    manifest = read_manifest(folder)
    files = list(manifest.find("onnxruntime", "fp32").files.values())
    size_mb = sum((folder / f).stat().st_size for f in files) / 1e6
    stamp = folder / integrity.STAMP

    def check() -> None:  # what opening a folder runs: the manifest read, then its files checked
        read_manifest(folder).check_files(folder, files)

    cold = time_calls(check, args.runs, warmup=0, setup=lambda: stamp.unlink(missing_ok=True))
    warm = time_calls(check, args.runs, warmup=0)
    for name, t in (("cold (no stamp)", cold), ("warm (stamp)", warm)):
        print(f"{args.backbone} {', '.join(files)} ({size_mb:.0f} MB) {name}: median {t.median:.1f} ms "
              f"(min {t.min:.1f}, max {t.max:.1f}, {len(t.times_ms)} runs)")


if __name__ == "__main__":
    main()
