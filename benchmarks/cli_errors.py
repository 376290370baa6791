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
import subprocess
import sys
import tempfile
from pathlib import Path

from hqsam_edge.timing import time_interleaved

CASES = {
    "missing image": ["predict", "--random-weights", "--image", "nope.png", "--box", "1,1,5,5", "--out", "m.png"],
    "missing folder": ["build", "nope_dir"],
    "missing checkpoint": ["export", "--checkpoint", "nope.pth"],
    "unknown backbone": ["export", "--backbone", "vit_x", "--random-weights"],
    "--precision fp61": ["build", ".", "--precision", "fp61"],
    "unknown option": ["export", "--bogus"],
}


def run(cmd: list[str], cwd: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)


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
            done: list[subprocess.CompletedProcess] = []
            calls = {"ours": lambda argv=argv: done.append(run([exe, *argv], tmp))}
            if before_env:
                calls["before"] = lambda argv=argv: run([sys.executable, "-m", "hqsam_edge.cli", *argv], tmp,
                                                        before_env)
            seconds = {side: t.median / 1000 for side, t in time_interleaved(calls, args.repeat).items()}
            proc = done[-1]
            before = f"{seconds['before']:.2f} | " if before_env else ""
            print(f"| {name} | {seconds['ours']:.2f} | {before}{proc.returncode} | {error_line(proc)} |", flush=True)


if __name__ == "__main__":
    main()
