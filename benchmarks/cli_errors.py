"""How fast bad input is refused: wall seconds of the installed ``hqsam-edge`` for each kind of mistake, the
median of ``--repeat`` runs (a fresh process each, as a user types it), and the error line it printed.

    python benchmarks/cli_errors.py --repeat 3

Each case must print one ``error:`` line and exit non-zero; the goal is under a second on the 2-core machine.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "missing image": ["predict", "--random-weights", "--image", "nope.png", "--box", "1,1,5,5", "--out", "m.png"],
    "missing folder": ["build", "nope_dir"],
    "missing checkpoint": ["export", "--checkpoint", "nope.pth"],
    "unknown backbone": ["export", "--backbone", "vit_x", "--random-weights"],
    "--precision fp61": ["build", ".", "--precision", "fp61"],
    "unknown option": ["export", "--bogus"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    exe = shutil.which("hqsam-edge") or str(Path(sys.executable).with_name("hqsam-edge"))
    print("| mistake | median wall s | runs | exit | error line |\n|---|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "manifest.json").write_text("{}")
        for name, argv in CASES.items():
            walls, proc = [], None
            for _ in range(args.repeat):
                start = time.perf_counter()
                proc = subprocess.run([exe, *argv], cwd=tmp, capture_output=True, text=True)
                walls.append(time.perf_counter() - start)
            lines = proc.stderr.strip().splitlines()
            ok = proc.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: ")
            print(f"| {name} | {statistics.median(walls):.2f} | {args.repeat} | {proc.returncode} | "
                  f"{lines[-1] if ok else 'NOT ONE ERROR LINE: ' + proc.stderr[-200:]!s} |", flush=True)


if __name__ == "__main__":
    main()
