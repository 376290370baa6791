"""What a killed process left in or beside an artifact folder goes when a command starts work there, not when
the manifest is read: each command's library entry (build, verify, the model choice that predict / segment /
eval open, bench's plan, the Triton writer, the processing graphs' writer) sweeps explicitly."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from hqsam_edge import owners
from hqsam_edge.export.manifest import read_manifest


def _dead_tag() -> str:
    """An owner tag of this realm whose process is gone (this pid, another start time)."""
    return f"{owners.MARK}{owners.realm()}-{os.getpid()}-1"


@pytest.fixture
def littered(tiny_folder, tmp_path):
    """A copy of the tiny folder with a killed build's staging inside, a killed export's staging beside it, and
    a live process's temporary inside."""
    folder = tmp_path / "hq_vit_tiny"
    shutil.copytree(tiny_folder, folder, symlinks=True)
    inside = folder / f".build.{_dead_tag()}.abc"
    (inside / "encoder.int8.onnxruntime.onnx").parent.mkdir()
    (inside / "encoder.int8.onnxruntime.onnx").write_bytes(b"half")
    beside = tmp_path / f".hq_vit_tiny.{_dead_tag()}.def"
    beside.mkdir()
    live = folder / f".manifest.json.{owners.tag()}.xyz.part"
    live.write_text("{")
    return folder, [inside, beside], live


def _build(folder: Path, tmp_path: Path) -> None:
    from hqsam_edge.pipeline.build import BuildSpec, build

    build(BuildSpec(str(folder), backend="onnxruntime", precision="fp32"))


def _verify(folder: Path, tmp_path: Path) -> None:
    from hqsam_edge.pipeline.verify import verify_folder

    assert not verify_folder(folder).problems


def _open_model(folder: Path, tmp_path: Path) -> None:
    from hqsam_edge.runtime.choice import ModelChoice

    ModelChoice(folder=str(folder), backend="onnxruntime", precision="fp32").open().close()


def _bench_plan(folder: Path, tmp_path: Path) -> None:
    from hqsam_edge.benchmarks.harness import plan_targets

    plan_targets(folders=[str(folder)], backbones=[], variants=[], backends=["onnxruntime"], precisions=["fp32"],
                 table10=False, reference=False)


def _triton(folder: Path, tmp_path: Path) -> None:
    from hqsam_edge.serve.triton import TritonSpec, write_repository

    write_repository(TritonSpec(folder=str(folder), out=str(tmp_path / "repo"), kind="cpu"))


COMMANDS = {"build": _build, "verify": _verify, "predict / segment / eval": _open_model, "bench": _bench_plan,
            "triton": _triton}


def test_reading_the_manifest_removes_nothing(littered):
    folder, stale, live = littered
    read_manifest(folder)
    assert all(p.exists() for p in [*stale, live])


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_command_starting_work_removes_what_a_killed_one_left(littered, tmp_path, command):
    folder, stale, live = littered
    COMMANDS[command](folder, tmp_path)
    assert not any(p.exists() for p in stale), command
    assert live.exists()  # a live process's temporary stays: two processes may share a folder
