"""How fast bad input is refused: wall seconds of the installed ``hqsam-edge`` for each kind of mistake, the
median of ``--repeat`` runs (a fresh process each, as a user types it), and the error line it printed.

    python benchmarks/cli_errors.py --repeat 3
    python benchmarks/cli_errors.py --repeat 3 --before /tmp/old_checkout   # also another checkout, interleaved

Each case must print one ``error:`` line and exit non-zero; the goal is under a second on the 2-core machine.
With ``--before DIR`` each run of ours is followed by one of ``python -m hqsam_edge.cli`` from DIR (its code
on ``PYTHONPATH``, the same interpreter), and both medians are printed.
"""

from __future__ import annotations

import argparse
import os
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


def timed(cmd: list[str], cwd: str, env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    return time.perf_counter() - start, proc


def error_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    ok = proc.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: ")
    return lines[-1] if ok else "NOT ONE ERROR LINE: " + " / ".join(lines[-3:])[-200:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--before", type=Path, default=None, help="another checkout to time the same way")
    args = parser.parse_args()
    exe = shutil.which("hqsam-edge") or str(Path(sys.executable).with_name("hqsam-edge"))
    before_env = None if args.before is None else {**os.environ, "PYTHONPATH": str(args.before.resolve())}
    print("| mistake | median wall s | " + ("before s | " if before_env else "") + "exit | error line |\n"
          "|---|---:|" + ("---:|" if before_env else "") + "---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "manifest.json").write_text("{}")
        for name, argv in CASES.items():
            ours, theirs = [], []
            for _ in range(args.repeat):
                wall, proc = timed([exe, *argv], tmp)
                ours.append(wall)
                if before_env:
                    theirs.append(timed([sys.executable, "-m", "hqsam_edge.cli", *argv], tmp, before_env)[0])
            before = f"{statistics.median(theirs):.2f} | " if before_env else ""
            print(f"| {name} | {statistics.median(ours):.2f} | {before}{proc.returncode} | {error_line(proc)} |",
                  flush=True)


if __name__ == "__main__":
    main()
