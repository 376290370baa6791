"""Beyond one process: ``segment`` as one process vs N shard processes at once on this machine, the merge's cost,
and ``segment --ray``'s overhead per image against plain ``segment`` (Ray's start-up reported apart).

Each configuration runs as the command line does (``python -m hqsam_edge.cli segment ...``, a fresh OUT each
time), on one synthetic image set (``data.synthetic.demo_image``, ``--size``, 2 boxes an image), with the same
model (``--folder``, or a Light HQ-SAM folder with random weights exported here). Rounds interleave the
configurations (one, shards, ray; the next round in reverse) so that a machine's drift hits each alike.

    images/s       images over the wall time of the command (from its start to its end: the interpreter, plan,
                   model load, stream, results.json); for shards, from the first start to the last end
    merge s        ``merge_shards`` on the shards' OUT (read every per-image file, write results.json)
    ray start s    ``ray.init`` (a local Ray, or joining --ray-address), from the summary's ``ray start``
    ray overhead   (ray's wall - ray start - one process's wall) / images: what Ray costs an image beyond start-up
                   (actor start and model load in the actors, pickling jobs, result rows)

The merged results.json is checked byte for byte against the one process's. A local Ray binds the machine's
interface address: as root, ``--netns`` (the default when root) runs it in a network namespace with loopback
only (``unshare -n``). On a 2-core machine the shards compete for the same cores: the figure there shows the
cost of sharding, not its gain (that needs a core or GPU per shard).

    python benchmarks/scale_out.py                             # small defaults: 8 images, 2 shards, 1 round
    python benchmarks/scale_out.py --images 64 --shards 2 4 --rounds 3 --ray --ray-actors 2 --json scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_SECONDS = re.compile(r"segmented \d+ image\(s\) \(\d+ masks\) in ([\d.]+) s")
_RAY_START = re.compile(r"ray start ([\d.]+) s")


@dataclass(frozen=True)
class Row:
    config: str  # "one", "shards N", "ray A actors"
    round: int
    images: int
    seconds: float
    merge_s: float | None = None
    ray_start_s: float | None = None

    @property
    def per_s(self) -> float:
        return self.images / self.seconds


def make_set(root: Path, n: int, size: tuple[int, int]) -> tuple[Path, Path]:
    """``n`` PNG images with 2 boxes each; their folder and the boxes file."""
    import numpy as np
    from PIL import Image

    from hqsam_edge.data.synthetic import demo_image

    h, w = size
    imgs = root / "imgs"
    imgs.mkdir(parents=True)
    boxes = {}
    for i in range(n):
        Image.fromarray(np.ascontiguousarray(demo_image(h, w, i))).save(imgs / f"img_{i:05d}.png")
        boxes[f"img_{i:05d}.png"] = [[w * 0.1, h * 0.1, w * 0.4, h * 0.5], [w * 0.3 + i % 7, h * 0.2, w * 0.5, h * 0.6]]
    (root / "boxes.json").write_text(json.dumps(boxes))
    return imgs, root / "boxes.json"


def segment_command(folder: Path, imgs: Path, boxes: Path, out: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "hqsam_edge.cli", "segment", str(folder), "--images", str(imgs / "*.png"),
            "--boxes", str(boxes), "--out", str(out), "--backend", "onnxruntime", "--quiet", *extra]


def run_one(command: list[str], netns: bool = False) -> tuple[float, str]:
    """The command's wall time and its stdout."""
    if netns:
        command = ["unshare", "-n", "sh", "-c", "ip link set lo up && exec " + shlex.join(command)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_ARRAY", "JOB_COMPLETION"))}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0 or _SECONDS.search(done.stdout) is None:
        raise SystemExit(f"failed ({done.returncode}): {shlex.join(command)}\n{done.stdout}{done.stderr}")
    return wall, done.stdout


def measure_shards(n: int, base: list[str], out: Path, images: int, round_: int) -> Row:
    """``n`` shard processes started together; the wall time to the last one's end; then the merge."""
    from hqsam_edge.apps.segment import merge_shards

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_ARRAY", "JOB_COMPLETION"))}
    started = time.perf_counter()
    procs = [subprocess.Popen([*base, "--shard", f"{k}/{n}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for k in range(n)]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"a shard failed ({p.returncode}): {err}")
    wall = time.perf_counter() - started
    t0 = time.perf_counter()
    merge_shards(out)
    return Row(f"shards {n}", round_, images, wall, merge_s=time.perf_counter() - t0)


def export_folder(root: Path) -> Path:
    from hqsam_edge.pipeline.export import ExportSpec, export_artifacts

    out = root / "hq_vit_tiny"
    export_artifacts(ExportSpec(random_weights=True, out=str(out), verify=False))
    return out


def report(rows: list[Row]) -> list[str]:
    """The median of each configuration over its rounds, one line each, and Ray's overhead per image."""
    by: dict[str, list[Row]] = {}
    for r in rows:
        by.setdefault(r.config, []).append(r)
    med = {c: statistics.median(r.seconds for r in rs) for c, rs in by.items()}
    lines = [f"{'config':<16} {'images':>6} {'wall s':>8} {'images/s':>9} {'merge s':>8} {'ray start s':>11}"]
    for c, rs in by.items():
        merge = [r.merge_s for r in rs if r.merge_s is not None]
        start = [r.ray_start_s for r in rs if r.ray_start_s is not None]
        lines.append(f"{c:<16} {rs[0].images:>6} {med[c]:>8.2f} {rs[0].images / med[c]:>9.3f} "
                     f"{statistics.median(merge) if merge else float('nan'):>8.3f} "
                     f"{statistics.median(start) if start else float('nan'):>11.2f}")
    for c, rs in by.items():
        if c.startswith("ray"):
            start = statistics.median(r.ray_start_s or 0.0 for r in rs)
            per = (med[c] - start - med["one"]) / rs[0].images
            lines.append(f"{c}: overhead {per:+.3f} s an image beyond its start-up ({start:.1f} s)")
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=8, help="images in the set")
    ap.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    ap.add_argument("--shards", type=int, nargs="*", default=[2], help="shard counts to time (repeat)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--ray", action="store_true", help="also time segment --ray (needs the ray extra)")
    ap.add_argument("--ray-actors", type=int, default=1)
    ap.add_argument("--ray-address", default=None, help="join this Ray cluster instead of a local Ray")
    ap.add_argument("--netns", action=argparse.BooleanOptionalAction, default=os.geteuid() == 0,
                    help="run a local Ray in its own network namespace (loopback only; root)")
    ap.add_argument("--folder", type=Path, default=None, help="artifact folder (default: vit_tiny, random weights)")
    ap.add_argument("--json", type=Path, default=None, help="write the rows as JSON")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))

    with tempfile.TemporaryDirectory(prefix="scale_out.") as tmp:
        root = Path(tmp)
        folder = args.folder or export_folder(root)
        imgs, boxes = make_set(root, args.images, tuple(args.size))
        configs = ["one", *[f"shards {n}" for n in args.shards], *([f"ray {args.ray_actors}"] if args.ray else [])]
        rows: list[Row] = []
        for round_ in range(args.rounds):
            for config in configs if round_ % 2 == 0 else configs[::-1]:
                out = root / f"out_{config.replace(' ', '_')}_{round_}"
                base = segment_command(folder, imgs, boxes, out, [])
                if config == "one":
                    rows.append(Row("one", round_, args.images, run_one(base)[0]))
                elif config.startswith("shards"):
                    rows.append(measure_shards(int(config.split()[1]), base, out, args.images, round_))
                    reference = root / f"out_one_{round_}" / "results.json"
                    if reference.exists() and (out / "results.json").read_bytes() != reference.read_bytes():
                        raise SystemExit(f"{config}: merged results.json differs from one process's")
                else:
                    extra = ["--ray", "--ray-actors", str(args.ray_actors)]
                    extra += ["--ray-address", args.ray_address] if args.ray_address else []
                    wall, stdout = run_one(segment_command(folder, imgs, boxes, out, extra),
                                           netns=args.netns and not args.ray_address)
                    start = _RAY_START.search(stdout)
                    rows.append(Row(config, round_, args.images, wall,
                                    ray_start_s=float(start[1]) if start else None))
                print(f"round {round_} {config}: {rows[-1].seconds:.2f} s", file=sys.stderr)
        print("\n".join(report(rows)))
        if args.json:
            args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1) + "\n")


if __name__ == "__main__":
    main()
