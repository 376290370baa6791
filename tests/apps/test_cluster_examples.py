"""The cluster examples: ``examples/slurm_segment.sh`` (a SLURM array, then the merge) and
``examples/k8s_segment_job.yaml`` (a Kubernetes Indexed Job, then the merge). The script runs here with
stand-ins for ``sbatch`` and ``hqsam-edge`` that record what they were given; every ``hqsam-edge`` command
line in either file is parsed by the real command line (option names, values, path checks), not run."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
import typer.main
import yaml

from hqsam_edge.apps.shards import SHARDS_ENV, Shard, shard_from_env
from hqsam_edge.cli import app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def parse(argv: list[str]) -> dict:
    """``hqsam-edge ARGV`` read as the command line reads it (callbacks and checks run), not invoked."""
    assert argv[0] == "hqsam-edge", argv
    command = typer.main.get_command(app).commands[argv[1]]
    return command.make_context(argv[1], list(argv[2:])).params


def stand_in(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)


@pytest.fixture()
def paths(tmp_path, tiny_folder):
    """A real model folder and boxes file for the examples' paths (the command line checks them)."""
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"a.jpg": [[1, 1, 5, 5]]}))
    return {"model": str(tiny_folder), "boxes": str(boxes), "out": str(tmp_path / "out")}


def test_slurm_array_script(tmp_path, paths):
    script = EXAMPLES / "slurm_segment.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    calls = tmp_path / "calls"
    stand_in(bin_, "sbatch", f'printf "%s\\0" sbatch "$@" >> {calls}; printf "\\n" >> {calls}; echo 4242\n')
    stand_in(bin_, "hqsam-edge", f'printf "%s\\0" hqsam-edge "$@" > {tmp_path / "argv"}\nexit 3\n')
    env = {**os.environ, "PATH": f"{bin_}{os.pathsep}{os.environ['PATH']}", "SHARDS": "4", "MODEL": paths["model"],
           "IMAGES": str(tmp_path / "imgs" / "*.jpg"), "BOXES": paths["boxes"], "OUT": paths["out"]}
    for k in [k for k in env if k.startswith("SLURM_")]:
        del env[k]
    subprocess.run(["bash", str(script)], env=env, cwd=tmp_path, check=True, capture_output=True)
    array, merge = [line.strip("\0").split("\0") for line in calls.read_text().strip("\n").split("\n")]
    assert array[:3] == ["sbatch", "--parsable", "--array=0-3"] and array[-1] == str(script)
    assert "--dependency=afterany:4242" in merge
    params = parse(shlex.split(merge[merge.index("--wrap") + 1]))
    assert params["out"] == Path(paths["out"])

    task = {**env, "SLURM_JOB_ID": "4243", "SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "0",
            "SLURM_ARRAY_TASK_MAX": "3", "SLURM_ARRAY_TASK_COUNT": "4"}
    subprocess.run(["bash", str(script)], env=task, cwd=tmp_path, check=True)  # exit 3 (bad images): a success
    argv = (tmp_path / "argv").read_text().strip("\0").split("\0")
    params = parse(argv)
    assert argv[1] == "segment" and params["shard"] is None  # the shard comes from the array's variables
    assert (str(params["folder"]), params["images"], str(params["boxes"]), str(params["out"])) == (
        paths["model"], env["IMAGES"], paths["boxes"], paths["out"])
    assert shard_from_env(task) == Shard(2, 4)


def test_kubernetes_indexed_job(paths):
    segment, merge = yaml.safe_load_all((EXAMPLES / "k8s_segment_job.yaml").read_text())
    assert segment["metadata"]["labels"]["step"] == "segment" and merge["metadata"]["labels"]["step"] == "merge"
    spec = segment["spec"]
    container = spec["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert spec["completionMode"] == "Indexed" and int(env[SHARDS_ENV]) == spec["completions"]
    assert shard_from_env({"JOB_COMPLETION_INDEX": "7", **env}) == Shard(7, spec["completions"])

    def command_line(container: dict) -> list[str]:
        shell, flag, line = container["command"]
        assert (shell, flag) == ("sh", "-c") and line.endswith("|| [ $? -eq 3 ]"), line  # exit 3: done, bad images
        for example, here in [("/data/models/hq_vit_l", paths["model"]), ("/data/annotations.json", paths["boxes"]),
                              ("/data/out", paths["out"])]:
            line = line.replace(example, here)
        return shlex.split(line.removesuffix("|| [ $? -eq 3 ]"))

    params = parse(command_line(container))
    assert params["shard"] is None and str(params["folder"]) == paths["model"] and params["images"].endswith("*.jpg")
    merge_container = merge["spec"]["template"]["spec"]["containers"][0]
    assert parse(command_line(merge_container))["out"] == Path(paths["out"])
    mounts = {m["mountPath"] for c in (container, merge_container) for m in c["volumeMounts"]}
    assert mounts == {"/data"}
