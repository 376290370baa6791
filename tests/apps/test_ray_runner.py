"""``segment --ray``: a local Ray started for the run (two actors on this 2-core machine: sized so it cannot
deadlock), bound to loopback only; its per-image files, results.json and errors.json equal a local run's byte
for byte; it resumes from files already there.

Ray binds the machine's interface address even when told 127.0.0.1, so the run goes in a network namespace of
its own (``unshare -n``, ``ip link set lo up``: root, as CI runs) where loopback is the only interface. Skipped,
with the reason, only outside CI where Ray or namespaces are missing; under CI (``CI=true``) that fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from hqsam_edge.apps.segment import RayOptions, SegmentSpec, segment_images
from hqsam_edge.cli import app
from hqsam_edge.errors import UsageError
from hqsam_edge.runtime.choice import ModelChoice
from tests.conftest import test_image

ROOT = Path(__file__).resolve().parents[2]
NAMES = [f"img_{i}.png" for i in range(4)]  # with boxes; plus empty.png (none) and bad.png (not an image)


def missing_requirement() -> str | None:
    if importlib.util.find_spec("ray") is None:
        return "Ray Data is not installed (pip install 'hqsam-edge[ray]')"
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs root with unshare and ip, to run Ray in a network namespace with loopback only"
    probe = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot make a network namespace here: {probe.stderr.strip()}"
    return None


@pytest.fixture(scope="module")
def ray_ready():
    reason = missing_requirement()
    if reason is not None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI must run the Ray test: {reason}")
        pytest.skip(reason)


def test_ray_options_are_checked():
    for bad, fragment in [(dict(actors=0), "--ray-actors"), (dict(gpus_per_actor=-1), "--ray-gpus-per-actor")]:
        with pytest.raises(UsageError, match=fragment):
            RayOptions(**bad)
    result = CliRunner().invoke(app, ["segment", "--images", "x/*", "--out", "o", "--everything", "--ray-actors", "2"])
    assert result.exit_code == 2 and result.stderr.strip() == (
        "error: --ray-address, --ray-actors and --ray-gpus-per-actor apply to --ray: add --ray")


def test_an_address_where_nothing_answers_is_refused_at_once():
    from hqsam_edge.apps.segment.ray_runner import _check_reachable

    with pytest.raises(UsageError, match=r"--ray-address ray://127.0.0.1:1: nothing answers there .*ray start --head"):
        _check_reachable("ray://127.0.0.1:1", timeout_s=2)
    _check_reachable("auto")  # left to Ray


def test_ray_run_equals_the_local_run(ray_ready, tiny_folder, tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    boxes = {}
    for i, name in enumerate(NAMES):
        Image.fromarray(test_image(40, 56, seed=i)).save(imgs / name)
        boxes[name] = [[2 + i, 3, 30, 20], [10, 2 + i, 40, 30]]
    Image.fromarray(test_image(40, 56, seed=9)).save(imgs / "empty.png")
    (imgs / "bad.png").write_bytes(b"not a png")
    boxes["bad.png"] = [[1, 1, 5, 5]]
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    model = ModelChoice(folder=tiny_folder, backend="onnxruntime", precision="fp32")
    local = segment_images(SegmentSpec(str(imgs / "*.png"), str(tmp_path / "boxes.json"), str(tmp_path / "local"),
                                       queue_size=1, model=model.describe()), model.open)
    assert (local.segmented, local.empty, len(local.failed)) == (len(NAMES), 1, 1)

    out = tmp_path / "ray"
    out.mkdir()
    shutil.copy(tmp_path / "local" / f"{NAMES[3]}.json", out)  # done before: the Ray run resumes
    command = [sys.executable, "-m", "hqsam_edge.cli", "segment", str(tiny_folder), "--images", str(imgs / "*.png"),
               "--boxes", str(tmp_path / "boxes.json"), "--out", str(out), "--backend", "onnxruntime",
               "--precision", "fp32", "--queue-size", "1", "--ray", "--ray-actors", "2"]
    inner = "ip link set lo up && exec " + " ".join(shlex.quote(a) for a in command)
    run = subprocess.run(["unshare", "-n", "sh", "-c", inner], cwd=ROOT, capture_output=True, text=True, timeout=420)
    assert run.returncode == 3, run.stderr  # 3: finished, one bad image left out
    done = len(NAMES) - 1  # all but the one resumed from
    assert f"segmented {done} image(s) ({2 * done} masks)" in run.stdout and "skipped 1 already done" in run.stdout, (
        run.stdout)
    assert "ray start" in run.stdout and "Traceback" not in run.stderr, run.stderr
    assert f"skipped bad.png (read): cannot read image {imgs / 'bad.png'}" in run.stderr

    def files(folder: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}

    assert sorted(files(out)) == sorted([f"{n}.json" for n in NAMES] + [
        "empty.png.json", "results.json", "errors.json", ".segment.json"])
    assert files(out) == files(tmp_path / "local")
